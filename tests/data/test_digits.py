"""The embedded offline dataset: scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from poisonlab.data.digits import DIGITS_CLASSES, load_digits_arrays, load_digits_splits


@pytest.fixture(scope="module")
def splits():
    return load_digits_splits(seed=0)


def test_arrays_are_scaled_uint8():
    x, y = load_digits_arrays()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 255
    np.testing.assert_array_equal(x[..., 0], np.rint(load_digits().images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(y, load_digits().target)


def test_split_shapes_names_and_sources(splits):
    for split, ds in zip(("train", "val", "test"), (splits.train, splits.val, splits.test), strict=True):
        assert ds.image_shape == (8, 8, 1)
        assert ds.class_names == DIGITS_CLASSES == tuple("0123456789")
        assert ds.name == f"digits-{split}"
        assert set(ds.source) == {f"digits:{split}"}
    sizes = np.array([len(splits.train), len(splits.val), len(splits.test)])
    assert sizes.sum() == 1797
    np.testing.assert_allclose(sizes / 1797, [0.65, 0.15, 0.20], atol=0.01)


def test_splits_partition_all_images(splits):
    x, _ = load_digits_arrays()
    union = np.concatenate([splits.train.x, splits.val.x, splits.test.x]).reshape(1797, -1)
    assert sorted(map(bytes, union)) == sorted(map(bytes, x.reshape(1797, -1)))


def test_splits_are_stratified(splits):
    total = np.bincount(load_digits_arrays()[1], minlength=10)
    for ds, frac in ((splits.test, 0.20), (splits.val, 0.15), (splits.train, 0.65)):
        assert np.abs(ds.class_counts() - frac * total).max() <= 2


def test_seed_determinism(splits):
    again = load_digits_splits(seed=0)
    assert again.train.content_hash == splits.train.content_hash
    assert again.test.content_hash == splits.test.content_hash
    assert load_digits_splits(seed=1).train.content_hash != splits.train.content_hash


def test_zero_validation_fraction():
    s = load_digits_splits(val_fraction=0.0, test_fraction=0.5)
    assert len(s.val) == 0 and s.val.image_shape == (8, 8, 1)
    assert len(s.train) + len(s.test) == 1797


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5), (0.7, 0.4)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match="fraction"):
        load_digits_splits(val_fraction=val, test_fraction=test)
