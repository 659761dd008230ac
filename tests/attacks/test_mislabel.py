from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import MislabelInjection
from poisonlab.data.dataset import Dataset


def _external(n=25, shape=(8, 8, 3), seed=5):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_appends_external_images_as_target(clean, snapshot, assert_unchanged):
    ext = _external()
    snap = snapshot(clean)
    res = MislabelInjection(images=ext, target="bird", source_tag="rutan-boomerang").poison(clean)
    ds = res.dataset
    assert len(ds) == len(clean) + 25
    assert res.poison_indices == frozenset(range(200, 225))
    assert int(ds.poison_mask.sum()) == 25
    np.testing.assert_array_equal(ds.x[200:], ext)
    assert (ds.y[200:] == clean.class_index("bird")).all()
    assert set(ds.source[200:]) == {"external:rutan-boomerang"}
    np.testing.assert_array_equal(ds.x[:200], clean.x)
    np.testing.assert_array_equal(ds.y[:200], clean.y)
    assert set(ds.source[:200]) == {"synthetic:train"}
    assert res.description == "mislabel: 25 external:rutan-boomerang -> bird, appended"
    assert_unchanged(clean, snap)
    np.testing.assert_array_equal(res.poisoned_only.x, ext)


def test_target_by_index_and_dataset_images(clean):
    ext_ds = Dataset(x=_external(4), y=np.zeros(4, dtype=int), class_names=("a",), source="folder:x")
    res = MislabelInjection(images=ext_ds, target=2).poison(clean)
    assert (res.poisoned_only.y == 2).all()
    assert set(res.poisoned_only.source) == {"external:external"}


def test_later_changes_to_the_input_array_do_not_leak(clean):
    ext = _external(3)
    attack = MislabelInjection(images=ext, target="bird")
    ext[:] = 0
    assert attack.poison(clean).poisoned_only.x.any()


def test_shape_mismatch(clean):
    with pytest.raises(ValueError, match=r"expected \(8, 8, 3\), got \(16, 16, 3\)"):
        MislabelInjection(images=_external(2, (16, 16, 3)), target="bird").poison(clean)


def test_channel_mismatch(clean, make_dataset):
    with pytest.raises(ValueError, match="images have 1 channel.*clean set has 3"):
        MislabelInjection(images=_external(2, (8, 8, 1)), target="bird").poison(clean)
    gray = make_dataset(channels=1)
    with pytest.raises(ValueError, match="images have 3 channel.*clean set has 1"):
        MislabelInjection(images=_external(2), target="bird").poison(gray)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 8, 8), dtype=np.uint8), r"shape \(N, H, W, C\), got shape \(2, 8, 8\)"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "dtype uint8.*got float32"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "at least one image"),
        (np.zeros((2, 8, 8, 4), dtype=np.uint8), "1 or 3 channels"),
        ([[1, 2]], "Dataset or a numpy array"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        MislabelInjection(images=images, target="bird")


def test_bad_target(clean):
    with pytest.raises(ValueError, match="target: unknown class 'plane'; expected one of"):
        MislabelInjection(images=_external(1), target="plane").poison(clean)
    with pytest.raises(ValueError, match=r"target: class index 12 out of range \[0, 9\]"):
        MislabelInjection(images=_external(1), target=12).poison(clean)
    with pytest.raises(ValueError, match="target must be a class name or index"):
        MislabelInjection(images=_external(1), target=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source_tag must be a non-empty string"):
        MislabelInjection(images=_external(1), target="bird", source_tag="")
