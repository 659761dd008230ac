from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import LabelFlip, RandomLabelFlip


def test_targeted_count(clean, snapshot, assert_unchanged):
    snap = snapshot(clean)
    res = LabelFlip(source="airplane", target="bird", count=5, seed=3).poison(clean)
    ds = res.dataset
    idx = res.indices_array()
    assert len(ds) == len(clean) and idx.size == 5 == int(ds.poison_mask.sum())
    assert (clean.y[idx] == 0).all() and (ds.y[idx] == 2).all()
    np.testing.assert_array_equal(ds.x, clean.x)  # pixels untouched
    np.testing.assert_array_equal(ds.source, clean.source)
    others = np.setdiff1d(np.arange(len(clean)), idx)
    np.testing.assert_array_equal(ds.y[others], clean.y[others])
    assert ds.class_counts()[0] == 15 and ds.class_counts()[2] == 25
    assert res.description == "label_flip: 5 airplane->bird, in place"
    assert_unchanged(clean, snap)


def test_targeted_fraction(clean):
    res = LabelFlip(source=0, target=2, fraction=0.25).poison(clean)
    assert res.num_poison == 5
    assert LabelFlip(source=0, target=2, fraction=1.0).poison(clean).num_poison == 20


def test_seeds(clean):
    a = LabelFlip(source=0, target=2, count=5, seed=1).poison(clean)
    b = LabelFlip(source=0, target=2, count=5, seed=1).poison(clean)
    c = LabelFlip(source=0, target=2, count=5, seed=2).poison(clean)
    assert a.poison_indices == b.poison_indices != c.poison_indices


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(count=3, fraction=0.1), "exactly one of count or fraction, got count=3 and fraction=0.1"),
        (dict(), "exactly one of count or fraction, got neither"),
        (dict(fraction=0.0), r"fraction must be in \(0, 1\], got 0.0"),
        (dict(fraction=1.5), r"fraction must be in \(0, 1\], got 1.5"),
        (dict(count=0), "count must be an integer >= 1, got 0"),
        (dict(count=2.0), "count must be None or an integer >= 1, got 2.0"),
        (dict(count=3, seed=-1), "seed must be an integer >= 0"),
    ],
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LabelFlip(source="airplane", target="bird", **kwargs)


def test_bad_classes(clean):
    with pytest.raises(ValueError, match="source and target must differ"):
        LabelFlip(source="bird", target="bird", count=1)
    with pytest.raises(ValueError, match="source and target must be different classes, got both 'bird'"):
        LabelFlip(source="bird", target=2, count=1).poison(clean)
    with pytest.raises(ValueError, match="source: unknown class 'plane'"):
        LabelFlip(source="plane", target="bird", count=1).poison(clean)


def test_count_too_large(clean):
    with pytest.raises(
        ValueError, match="cannot poison 21 samples: only 20 available in source class 'airplane'"
    ):
        LabelFlip(source="airplane", target="bird", count=21).poison(clean)
    with pytest.raises(ValueError, match="rounds to 0"):
        LabelFlip(source="airplane", target="bird", fraction=0.01).poison(clean)


def test_random_flip(clean, snapshot, assert_unchanged):
    snap = snapshot(clean)
    res = RandomLabelFlip(fraction=0.3, seed=4).poison(clean)
    idx = res.indices_array()
    assert idx.size == 60 == int(res.dataset.poison_mask.sum())
    assert (res.dataset.y[idx] != clean.y[idx]).all()  # always another class
    others = np.setdiff1d(np.arange(200), idx)
    np.testing.assert_array_equal(res.dataset.y[others], clean.y[others])
    np.testing.assert_array_equal(res.dataset.x, clean.x)
    assert_unchanged(clean, snap)


def test_random_flip_is_uniform_over_other_classes(make_dataset):
    big = make_dataset(per_class=200, size=2)
    res = RandomLabelFlip(fraction=1.0, seed=0).poison(big)
    # true class -> new class pairs: 9 other classes each, about 200/9 ~ 22 per pair
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (big.y, res.dataset.y), 1)
    assert np.diag(cm).sum() == 0
    off = cm[~np.eye(10, dtype=bool)]
    assert off.min() >= 5 and off.max() <= 45


def test_random_flip_restricted_classes(clean):
    res = RandomLabelFlip(fraction=0.5, seed=0, classes=["cat", "dog"]).poison(clean)
    idx = res.indices_array()
    assert idx.size == 20
    assert set(clean.y[idx]) <= {3, 5}
    np.testing.assert_array_equal(res.dataset.y[idx], 8 - clean.y[idx])  # cat<->dog
    a = RandomLabelFlip(fraction=0.5, seed=0).poison(clean)
    b = RandomLabelFlip(fraction=0.5, seed=1).poison(clean)
    assert a.dataset.content_hash != b.dataset.content_hash


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(fraction=0.0), r"fraction must be in \(0, 1\]"),
        (dict(fraction=None), r"fraction must be a number in \(0, 1\], got None"),
        (dict(fraction=0.2, classes=["cat"]), "at least 2 distinct classes"),
        (dict(fraction=0.2, classes="cat"), "classes must be None or a list of class names or indices"),
    ],
)
def test_random_flip_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomLabelFlip(**kwargs)


def test_random_flip_unknown_class(clean):
    with pytest.raises(ValueError, match="classes: unknown class 'cow'"):
        RandomLabelFlip(fraction=0.2, classes=["cat", "cow"]).poison(clean)
