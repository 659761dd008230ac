"""``.npz`` / ``.npy`` files <-> Dataset, with layout and value-range normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.data.arrays import load_arrays, save_arrays, to_labels, to_uint8_images
from poisonlab.data.dataset import Dataset

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, size=(5, 4, 6, 3), dtype=np.uint8)
Y = np.array([0, 1, 2, 1, 0])


def test_npz_with_x_and_y(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    ds = load_arrays(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.x, X)
    assert ds.y.tolist() == Y.tolist() and ds.class_names == ("0", "1", "2")
    assert ds.name == "d" and set(ds.source) == {"arrays:d.npz"}


def test_npz_with_images_labels_and_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", images=X, labels=Y, class_names=np.array(["a", "b", "c", "d"]))
    ds = load_arrays(tmp_path / "d.npz")
    assert ds.class_names == ("a", "b", "c", "d")
    assert load_arrays(tmp_path / "d.npz", class_names=["p", "q", "r"]).class_names == ("p", "q", "r")


def test_missing_keys(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=X)
    with pytest.raises(ValueError, match="'x' and 'y'"):
        load_arrays(tmp_path / "d.npz")


def test_npy_needs_labels(tmp_path):
    np.save(tmp_path / "imgs.npy", X)
    with pytest.raises(ValueError, match="no labels"):
        load_arrays(tmp_path / "imgs.npy")
    assert load_arrays(tmp_path / "imgs.npy", labels=Y).y.tolist() == Y.tolist()
    np.save(tmp_path / "labels.npy", Y)
    assert load_arrays(tmp_path / "imgs.npy", labels=tmp_path / "labels.npy").y.tolist() == Y.tolist()
    ds = load_arrays(tmp_path / "imgs.npy", label="bird", class_names=["plane", "bird"])
    assert ds.y.tolist() == [1] * 5
    with pytest.raises(ValueError, match="class_names"):
        load_arrays(tmp_path / "imgs.npy", label="bird")


def test_grayscale_and_channels_first():
    gray = RNG.integers(0, 256, size=(2, 5, 7), dtype=np.uint8)
    assert to_uint8_images(gray).shape == (2, 5, 7, 1)
    nchw = X.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(to_uint8_images(nchw), X)
    assert to_uint8_images(np.zeros((2, 1, 5, 5), np.uint8)).shape == (2, 5, 5, 1)
    assert to_uint8_images(np.zeros((2, 3, 5, 3), np.uint8)).shape == (2, 3, 5, 3)  # ambiguous: channels-last


def test_float_and_integer_conversion():
    f = np.array([0.0, 0.5, 1.0, 0.0019, 0.002]).reshape(1, 1, 5, 1)
    assert to_uint8_images(f).ravel().tolist() == [0, 128, 255, 0, 1]
    assert to_uint8_images(X.astype(np.int64)).dtype == np.uint8


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((4, 4), np.uint8), "got 2-D"),
        (np.zeros((1, 2, 2, 2, 3), np.uint8), "got 5-D"),
        (np.zeros((2, 5, 5, 4), np.uint8), "1 or 3 channels"),
        (np.full((1, 2, 2, 3), 1.5), r"\[0, 1\]"),
        (np.full((1, 2, 2, 3), -0.1), r"\[0, 1\]"),
        (np.full((1, 2, 2, 3), np.nan), "NaN"),
        (np.full((1, 2, 2, 3), -1), r"\[0, 255\]"),
        (np.full((1, 2, 2, 3), 256), r"\[0, 255\]"),
        (np.full((1, 2, 2, 3), "a"), "dtype"),
        (np.ones((1, 2, 2, 3), bool), "dtype"),
    ],
)
def test_invalid_images(x, match):
    with pytest.raises(ValueError, match=match):
        to_uint8_images(x)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        ([0, 1], "2 labels"),
        (np.zeros((3, 2)), "1-D"),
        ([0.0, 1.5, 2.0], "non-integer"),
        ([0.0, np.nan, 2.0], "non-integer"),
        (["a", "b", "c"], "dtype"),
        ([True, False, True], "dtype"),
        ([0, -1, 2], "non-negative"),
    ],
)
def test_invalid_labels(y, match):
    with pytest.raises(ValueError, match=match):
        to_labels(y, 3)


def test_whole_float_labels_are_accepted():
    assert to_labels(np.array([0.0, 2.0]), 2).tolist() == [0, 2]


def test_label_errors_surface_from_load(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y[:3])
    with pytest.raises(ValueError, match="5 images but 3 labels"):
        load_arrays(tmp_path / "d.npz")


def test_round_trip(tmp_path):
    ds = Dataset(
        x=X, y=Y, class_names=("a", "b", "c"), source=["s0", "s1", "s2", "s3", "s4"], name="mine",
        poison_mask=np.array([0, 1, 0, 0, 1], bool),
    )  # fmt: skip
    path = save_arrays(ds, tmp_path / "saved")
    assert path == tmp_path / "saved.npz"
    back = load_arrays(path)
    assert back.content_hash == ds.content_hash
    assert back.source.tolist() == ds.source.tolist() and back.name == "mine"
    assert back.poison_mask.tolist() == ds.poison_mask.tolist()
    with np.load(path, allow_pickle=False) as z:  # plain numpy can read it without pickle
        assert set(z.files) == {"x", "y", "class_names", "source", "name", "poison_mask"}
    compressed = save_arrays(ds.replace(poison_mask=None), tmp_path / "c.npz", compress=True)
    assert load_arrays(compressed).poison_mask is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=".npz or .npy"):
        load_arrays(tmp_path / "data.csv")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        load_arrays(tmp_path / "bad.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read"):
        load_arrays(tmp_path / "obj.npy", labels=[0])
