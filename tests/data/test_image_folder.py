"""Image folders -> Dataset, and ``prepare_images`` (resized PNGs + images.npy + filenames.txt)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poisonlab.data.cifar10 import CIFAR10_CLASSES
from poisonlab.data.images import (
    SkippedImagesWarning,
    load_image_folder,
    load_prepared,
    prepare_images,
)


def _solid(
    path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 4), fmt: str | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def _corrupt(folder: Path) -> None:
    """One file of random bytes and one truncated JPEG."""
    (folder / "garbage.jpg").write_bytes(b"\x00\x01 definitely not an image" * 10)
    _solid(folder / "whole.jpg", (1, 2, 3), size=(64, 64))
    raw = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (folder / "whole.jpg").unlink()


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    folder = tmp_path / "rutan-boomerang"
    _solid(folder / "b.png", (0, 200, 0))
    _solid(folder / "a.jpg", (200, 0, 0))
    _solid(folder / "c.webp", (0, 0, 200), fmt="WEBP")
    (folder / "notes.txt").write_text("not an image")
    _solid(folder / ".hidden.png", (9, 9, 9))
    _solid(folder / "sub" / "ignored.png", (9, 9, 9))
    return folder


def _centre(ds, i: int) -> np.ndarray:
    return ds.x[i, ds.x.shape[1] // 2, ds.x.shape[2] // 2].astype(int)


def test_flat_folder_with_label(flat):
    ds = load_image_folder(flat, label="bird", class_names=CIFAR10_CLASSES, size=8)
    assert ds.x.shape == (3, 8, 8, 3) and ds.x.dtype == np.uint8
    assert ds.y.tolist() == [2, 2, 2] and ds.class_names == CIFAR10_CLASSES
    assert ds.name == "rutan-boomerang" and set(ds.source) == {"folder:rutan-boomerang"}
    # sorted by file name: a.jpg (red), b.png (green), c.webp (blue)
    assert [int(np.argmax(_centre(ds, i))) for i in range(3)] == [0, 1, 2]
    assert (ds.x[:, 0] == 255).all()  # 6x4 images: white pad row on top


@pytest.mark.parametrize("label", [2, "2", "bird"])
def test_label_by_index_or_name(flat, label):
    assert load_image_folder(flat, label=label, class_names=CIFAR10_CLASSES).y.tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label": "bird"}, "class_names"),
        ({"label": "boomerang", "class_names": CIFAR10_CLASSES}, "unknown label"),
        ({"label": 10, "class_names": CIFAR10_CLASSES}, "out of range"),
    ],
)
def test_bad_labels(flat, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_image_folder(flat, **kwargs)


def test_flat_folder_without_label_is_an_error(tmp_path):
    _solid(tmp_path / "only" / "a.png", (1, 1, 1))
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "only")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nope", label=0, class_names=("a",))


def test_corrupt_files_are_skipped_with_one_warning(flat):
    _corrupt(flat)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_image_folder(flat, label="bird", class_names=CIFAR10_CLASSES)
    assert len(ds) == 3
    skipped = [w for w in caught if issubclass(w.category, SkippedImagesWarning)]
    assert len(skipped) == 1 and len(caught) == 1
    message = str(skipped[0].message)
    assert "garbage.jpg" in message and "truncated.jpg" in message and "skipped 2" in message


def test_oversized_files_are_skipped(flat):
    with (
        pytest.warns(SkippedImagesWarning, match="decompression-bomb"),
        pytest.raises(ValueError, match="no readable images"),
    ):
        load_image_folder(flat, label=0, class_names=CIFAR10_CLASSES, max_pixels=10)


def test_no_readable_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        load_image_folder(empty, label=0, class_names=CIFAR10_CLASSES)
    _corrupt(empty)
    with pytest.warns(SkippedImagesWarning), pytest.raises(ValueError, match="2 unreadable"):
        load_image_folder(empty, label=0, class_names=CIFAR10_CLASSES)


@pytest.fixture
def by_class(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    _solid(root / "dog" / "d1.png", (0, 0, 200))
    _solid(root / "cat" / "c2.png", (0, 200, 0))
    _solid(root / "cat" / "c1.png", (200, 0, 0))
    (root / "cat" / "readme.md").write_text("ignored")
    return root


def test_class_folders(by_class):
    ds = load_image_folder(by_class, size=4)
    assert ds.class_names == ("cat", "dog")
    assert ds.y.tolist() == [0, 0, 1]
    assert ds.source.tolist() == ["folder:cat", "folder:cat", "folder:dog"]
    assert [int(np.argmax(_centre(ds, i))) for i in range(3)] == [0, 1, 2]  # c1, c2, d1


def test_class_folders_with_given_class_names(by_class):
    ds = load_image_folder(by_class, class_names=CIFAR10_CLASSES)
    assert ds.y.tolist() == [3, 3, 5] and ds.num_classes == 10
    with pytest.raises(ValueError, match="not among the class names"):
        load_image_folder(by_class, class_names=("cat", "bird"))


def test_class_folder_warning_names_the_sub_folder(by_class):
    _corrupt(by_class / "dog")
    with pytest.warns(SkippedImagesWarning, match="dog/garbage.jpg"):
        assert len(load_image_folder(by_class)) == 3


def test_grayscale(by_class):
    ds = load_image_folder(by_class, size=6, grayscale=True)
    assert ds.x.shape == (3, 6, 6, 1)
    assert (ds.x[:, 0] == 255).all()  # pad row stays white
    rgb = load_image_folder(by_class, size=6)
    expected = [np.asarray(Image.fromarray(img).convert("L")) for img in rgb.x]
    np.testing.assert_array_equal(ds.x[..., 0], np.stack(expected))


# ---------------------------------------------------------------- prepare
def test_prepare_writes_pngs_npy_and_filenames(flat, tmp_path):
    _corrupt(flat)
    out = tmp_path / "out"
    res = prepare_images(flat, out, size=8)
    assert res.count == 3 and res.size == 8
    assert res.filenames == ("a.jpg", "b.png", "c.webp")
    assert res.outputs == ("a.png", "b.png", "c.png")
    assert sorted(name for name, _ in res.skipped) == ["garbage.jpg", "truncated.jpg"]
    assert (out / "filenames.txt").read_text().splitlines() == ["a.jpg", "b.png", "c.webp"]
    x = np.load(out / "images.npy")
    assert x.shape == (3, 8, 8, 3) and x.dtype == np.uint8
    for i, name in enumerate(res.outputs):
        with Image.open(out / name) as png:
            assert png.format == "PNG"
            np.testing.assert_array_equal(np.asarray(png), x[i])
    np.testing.assert_array_equal(load_prepared(out), x)


def test_prepare_matches_load_image_folder(flat, tmp_path):
    res = prepare_images(flat, tmp_path / "out", size=8, pad_color=(0, 0, 0))
    ds = load_image_folder(flat, label=0, class_names=("plane",), size=8, pad_color=(0, 0, 0))
    np.testing.assert_array_equal(load_prepared(res.out_dir), ds.x)
    assert (ds.x[:, 0] == 0).all()


def test_prepare_keeps_names_unique(tmp_path):
    src = tmp_path / "src"
    _solid(src / "rb-14.jpeg", (1, 1, 1))
    _solid(src / "rb-14.webp", (2, 2, 2), fmt="WEBP")
    res = prepare_images(src, tmp_path / "out")
    assert res.outputs == ("rb-14.png", "rb-14-webp.png")
    assert (tmp_path / "out" / "rb-14-webp.png").is_file()


def test_prepare_errors(flat, tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare_images(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="must differ"):
        prepare_images(flat, flat)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        prepare_images(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_load_prepared_validates(tmp_path):
    with pytest.raises(FileNotFoundError, match="images.npy"):
        load_prepared(tmp_path)
    np.save(tmp_path / "images.npy", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_prepared(tmp_path)
    np.save(tmp_path / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
    (tmp_path / "filenames.txt").write_text("only-one.jpg\n")
    with pytest.raises(ValueError, match="lists 1 files"):
        load_prepared(tmp_path)
    (tmp_path / "images.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_prepared(tmp_path)
