"""The one entry point: named splits and path dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from poisonlab.data import DATASETS, load_dataset_path, load_splits, prepare_images, save_arrays
from poisonlab.data.cifar10 import CIFAR10_CLASSES, CifarNotFoundError


def test_names():
    assert DATASETS == ("cifar10", "digits")


def test_digits_by_name():
    s = load_splits("Digits", seed=3)
    assert s.train.name == "digits-train" and s.class_names == tuple("0123456789")


def test_a_data_folder_for_the_embedded_digits_is_refused_not_ignored(tmp_path):
    from poisonlab.data.catalog import load_named_splits, resolve_data_dir

    with pytest.raises(ValueError, match=r"was given for digits, which is embedded"):
        load_named_splits("digits", data_dir=tmp_path)
    assert resolve_data_dir("digits") is None  # without one, nothing to say


def test_a_flat_image_folder_without_a_label_names_the_layout_it_needs(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(
        ValueError, match=r"no class sub-folders \(ROOT/<class>/\*\.png.*read only as one class"
    ):
        load_dataset_path(tmp_path, class_names=CIFAR10_CLASSES)


def test_cifar10_by_name(cifar_root):
    s = load_splits("cifar-10", data_dir=cifar_root, val_size=10)
    assert s.train.name == "cifar10-train" and (len(s.train), len(s.val), len(s.test)) == (90, 10, 20)
    with pytest.raises(ValueError, match="10000"):
        load_splits("cifar10", data_dir=cifar_root)  # the chapter's 10,000 validation images
    with pytest.raises(CifarNotFoundError):
        load_splits("cifar10")  # nothing in the (isolated) cache and no network
    with pytest.raises(ValueError, match="cifar10 only"):
        load_splits("digits", val_size=10)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="cifar10, digits"):
        load_splits("imagenet")


@pytest.mark.parametrize(
    ("name", "key"), [("CIFAR-10", "cifar10"), ("cifar_10", "cifar10"), (" Digits", "digits")]
)
def test_dataset_key_takes_every_spelling(name, key):
    from poisonlab.data.catalog import dataset_key

    assert dataset_key(name) == key
    assert {dataset_key(n) for n in DATASETS} == set(DATASETS)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "planes"
    folder.mkdir()
    for i, color in enumerate([(200, 0, 0), (0, 200, 0)]):
        Image.new("RGB", (10, 5), color).save(folder / f"p{i}.png")
    return folder


def test_image_folder_path(photos):
    ds = load_dataset_path(photos, label="bird", class_names=CIFAR10_CLASSES, size=16)
    assert ds.x.shape == (2, 16, 16, 3) and ds.y.tolist() == [2, 2]


def test_prepared_folder_path(photos, tmp_path):
    out = prepare_images(photos, tmp_path / "prepared", size=16).out_dir
    ds = load_dataset_path(out, label="bird", class_names=CIFAR10_CLASSES, size=16)
    np.testing.assert_array_equal(
        ds.x, load_dataset_path(photos, label=2, class_names=CIFAR10_CLASSES, size=16).x
    )
    assert set(ds.source) == {"folder:prepared"}
    with pytest.raises(ValueError, match="--size 32"):
        load_dataset_path(out, label="bird", class_names=CIFAR10_CLASSES, size=32)
    with pytest.raises(ValueError, match="label"):
        load_dataset_path(out, size=16)


def test_array_paths(photos, tmp_path):
    ds = load_dataset_path(photos, label=1, class_names=("a", "b"), size=8)
    assert load_dataset_path(save_arrays(ds, tmp_path / "d.npz")).content_hash == ds.content_hash
    np.save(tmp_path / "x.npy", ds.x)
    assert (
        load_dataset_path(tmp_path / "x.npy", label="b", class_names=("a", "b")).content_hash
        == ds.content_hash
    )


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset_path(tmp_path / "missing")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported"):
        load_dataset_path(tmp_path / "data.csv")
