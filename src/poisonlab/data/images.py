"""Image files -> model-ready arrays, following the chapter's ``resize_imges.py``.

Each image is EXIF-rotated, converted to RGB (alpha composited onto the pad colour, white by
default), padded to a centred square and LANCZOS-resized. Unreadable files are skipped. What one
file may cost to decode is bounded before any pixel is decoded (:mod:`poisonlab.data.image_limits`);
labels are parsed by :func:`poisonlab.data.labels.resolve_label`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from poisonlab.data.dataset import Dataset
from poisonlab.data.image_limits import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    ImageLimits,
    ImageTooLargeError,
    open_checked,
)
from poisonlab.data.labels import resolve_label
from poisonlab.data.preprocess import (
    WHITE,
    Color,
    check_color,
    check_output_size,
    pad_to_square,
    preprocess_image,
    rgb_to_gray,
    to_rgb,
)

# the preprocessing steps, the limits and the label parser are re-exported: callers import them here
__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "WHITE",
    "ImageTooLargeError",
    "PreparedImages",
    "SkippedImagesWarning",
    "list_image_files",
    "load_image_bytes",
    "load_image_file",
    "load_image_folder",
    "load_prepared",
    "pad_to_square",
    "prepare_images",
    "preprocess_image",
    "resolve_label",
    "rgb_to_gray",
    "to_rgb",
]
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class SkippedImagesWarning(UserWarning):
    """Some image files could not be read and were left out."""


def _decode_checked(source: bytes | Path, size: int, color: Color, limits: ImageLimits) -> np.ndarray:
    """Refuse ``source`` over ``limits`` from its size and header alone, then decode and preprocess.

    The guard shared by :func:`load_image_file` and :func:`load_image_bytes` (see
    :func:`~poisonlab.data.image_limits.open_checked`): :class:`ImageTooLargeError` over a limit,
    ``ValueError`` for anything unreadable, messages that read as predicates ("not an image ...").
    """
    with open_checked(source, limits) as img:
        img.load()
        return preprocess_image(img, size, color)


def load_image_file(
    path: str | os.PathLike[str],
    size: int = 32,
    pad_color: Sequence[int] = WHITE,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_side: int = MAX_IMAGE_SIDE,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> np.ndarray:
    """Read and preprocess one image file (see :func:`preprocess_image`).

    ``max_pixels``, ``max_side`` and ``max_bytes`` bound the decoding cost (see
    :class:`~poisonlab.data.image_limits.ImageLimits`); they are checked before decoding.

    Returns
    -------
    np.ndarray
        Shape (size, size, 3), dtype uint8.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        Corrupt, truncated or unsupported file; :class:`ImageTooLargeError` (a ValueError) over
        a limit, checked before decoding (decompression-bomb protection).
    """
    p = Path(path)
    size, color = check_output_size(size), check_color(pad_color)
    limits = ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side)
    if not p.is_file():
        raise FileNotFoundError(f"no such image file: {p}")
    try:
        return _decode_checked(p, size, color, limits)
    except ValueError as exc:
        raise type(exc)(f"cannot read image {p.name}: {exc}") from exc


def load_image_bytes(
    data: bytes,
    *,
    size: int = 32,
    max_pixels: int = MAX_IMAGE_PIXELS,
    pad_color: Sequence[int] = WHITE,
    max_side: int = MAX_IMAGE_SIDE,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> np.ndarray:
    """Decode and preprocess one image file's bytes (an upload), like :func:`load_image_file`.

    Parameters
    ----------
    data : bytes
        The whole file, any format Pillow reads.
    size, pad_color
        As for :func:`preprocess_image`.
    max_pixels, max_side, max_bytes : int
        Largest width x height (and padded square), side and file decoded; checked from the
        length and the header before any pixel is decoded
        (:class:`~poisonlab.data.image_limits.ImageLimits`).

    Returns
    -------
    np.ndarray
        Shape (size, size, 3), dtype uint8, values in [0, 255].

    Raises
    ------
    ImageTooLargeError
        Over a limit (a ValueError).
    ValueError
        ``data`` is not bytes, is empty, or is not a readable image (corrupt, truncated,
        unsupported). Messages read as predicates, e.g. "not an image in a known format".
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected the image file as bytes, got {type(data).__name__}")
    size, color = check_output_size(size), check_color(pad_color)
    limits = ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side)
    if len(data) == 0:
        raise ValueError("empty (0 bytes)")
    return _decode_checked(bytes(data), size, color, limits)


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder`` (by extension, hidden files excluded), sorted by name."""
    found = (p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.name[0] != ".")
    return sorted((p for p in found if p.is_file()), key=lambda p: p.name)


def _read_many(
    files: Sequence[Path], size: int, color: Color, grayscale: bool, max_pixels: int
) -> tuple[list[np.ndarray], list[Path], list[tuple[str, str]]]:
    """Preprocess ``files``; returns (arrays, files read, (file name, reason) of skipped ones)."""
    arrays, kept, skipped = [], [], []
    for f in files:
        try:
            arr = load_image_file(f, size, color, max_pixels=max_pixels)
        except (ValueError, OSError) as exc:
            skipped.append((f.name, str(exc).removeprefix(f"cannot read image {f.name}: ")))
            continue
        if grayscale:
            arr = np.asarray(Image.fromarray(arr).convert("L"))[..., np.newaxis]
        arrays.append(arr)
        kept.append(f)
    return arrays, kept, skipped


def _warn_skipped(skipped: Sequence[tuple[str, str]], where: Path) -> None:
    if skipped:
        listing = "; ".join(f"{name} ({reason})" for name, reason in skipped)
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) in {where}: {listing}",
            SkippedImagesWarning,
            stacklevel=3,
        )


def _folder_groups(
    root: Path, label: str | int | None, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names and (folder, class index) pairs for a flat or class-folder layout."""
    if label is not None:
        if class_names is None:
            raise ValueError("a flat image folder with a label needs class_names (e.g. CIFAR-10's)")
        names = tuple(str(c) for c in class_names)
        return names, [(root, resolve_label(label, names))]
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name
    )
    if not subdirs:
        raise ValueError(
            f"{root} has no class sub-folders (ROOT/<class>/*.png, one per class); a flat folder of "
            "images can be read only as one class (a label, such as train's --label)"
        )
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(d.name for d in subdirs)
    unknown = [d.name for d in subdirs if d.name not in names]
    if unknown:
        raise ValueError(f"sub-folders {unknown} of {root} are not among the class names {list(names)}")
    return names, [(d, names.index(d.name)) for d in subdirs]


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    size: int = 32,
    label: str | int | None = None,
    class_names: Sequence[str] | None = None,
    pad_color: Sequence[int] = WHITE,
    grayscale: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Dataset:
    """Load a folder of images as a :class:`Dataset`.

    Layouts: class sub-folders (``root/<class>/*.jpg``; class names = sorted sub-folder names
    unless ``class_names`` lists them all; images directly in ``root`` ignored), or a flat folder
    of one class given by ``label`` (a name or index into ``class_names``, then required).
    Files are read in name order; other extensions and hidden files are ignored; unreadable or
    oversized files are skipped and listed in one :class:`SkippedImagesWarning`.

    Returns
    -------
    Dataset
        Images (N, size, size, 3) uint8 -- (N, size, size, 1) with ``grayscale`` -- in [0, 255],
        sources ``"folder:<folder name>"`` (per sub-folder), named after ``path``. Raises
        FileNotFoundError when ``path`` is not a directory, ValueError for layout/label problems
        or when no image is readable.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    size, color = check_output_size(size), check_color(pad_color)
    names, groups = _folder_groups(root, label, class_names)
    images, labels, sources, skipped = [], [], [], []  # type: ignore[var-annotated]
    for folder, idx in groups:
        arrays, _, bad = _read_many(list_image_files(folder), size, color, grayscale, max_pixels)
        images += arrays
        labels += [idx] * len(arrays)
        sources += [f"folder:{folder.resolve().name}"] * len(arrays)
        skipped += bad if folder == root else [(f"{folder.name}/{n}", r) for n, r in bad]
    _warn_skipped(skipped, root)
    if not images:
        raise ValueError(f"no readable images in {root} ({len(skipped)} unreadable file(s) skipped)")
    return Dataset(
        x=np.stack(images),
        y=np.asarray(labels, dtype=np.int64),
        class_names=names,
        source=np.asarray(sources, dtype=object),
        name=root.resolve().name,
    )


@dataclass(frozen=True)
class PreparedImages:
    """What :func:`prepare_images` wrote.

    ``filenames`` are the source names in the order of ``images.npy``, ``outputs`` the written
    PNG names (same order), ``skipped`` the (file name, reason) of each unreadable source file.
    """

    out_dir: Path
    size: int
    filenames: tuple[str, ...]
    outputs: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def count(self) -> int:
        """Number of images written."""
        return len(self.filenames)

    @property
    def images_path(self) -> Path:
        return self.out_dir / "images.npy"


def _png_names(files: Sequence[Path]) -> list[str]:
    """``<stem>.png`` per file; on a clash (rb-14.jpeg, rb-14.webp) later ones get ``<stem>-<ext>.png``."""
    taken: set[str] = set()
    out = []
    for f in files:
        name, n = f"{f.stem}.png", 1
        if name in taken:
            name = f"{f.stem}-{f.suffix.lstrip('.').lower()}.png"
        while name in taken:
            n += 1
            name = f"{f.stem}-{f.suffix.lstrip('.').lower()}-{n}.png"
        taken.add(name)
        out.append(name)
    return out


def prepare_images(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    size: int = 32,
    pad_color: Sequence[int] = WHITE,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> PreparedImages:
    """Preprocess a flat folder of photos into ``out_dir`` (``resize_imges.py``).

    Writes one PNG per readable image (same stem + ``.png``), ``images.npy`` (N, size, size, 3)
    uint8 and ``filenames.txt`` (one source file name per line, same order: sorted by name).
    Unreadable files are not warned about but returned in :attr:`PreparedImages.skipped`.

    Raises FileNotFoundError when ``src`` is not a directory and ValueError for a bad size or
    colour, ``out_dir`` equal to ``src``, or no readable image.
    """
    src_dir, out = Path(src), Path(out_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"source folder not found: {src_dir}")
    size, color = check_output_size(size), check_color(pad_color)
    if out.resolve() == src_dir.resolve():
        raise ValueError(
            "the output folder must differ from the source folder (PNGs could overwrite sources)"
        )
    files = [f for f in list_image_files(src_dir) if "\n" not in f.name and "\r" not in f.name]
    arrays, kept, skipped = _read_many(files, size, color, False, max_pixels)
    if not arrays:
        raise ValueError(f"no readable images in {src_dir} ({len(skipped)} unreadable file(s) skipped)")
    out.mkdir(parents=True, exist_ok=True)
    outputs = _png_names(kept)
    for arr, name in zip(arrays, outputs, strict=True):
        Image.fromarray(arr).save(out / name, format="PNG")
    np.save(out / "images.npy", np.stack(arrays))
    (out / "filenames.txt").write_text("".join(f"{f.name}\n" for f in kept), encoding="utf-8")
    return PreparedImages(out, size, tuple(f.name for f in kept), tuple(outputs), tuple(skipped))


def load_prepared(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``images.npy`` written by :func:`prepare_images`.

    Returns an array of shape (N, H, W, 3) (or C = 1), dtype uint8, N >= 1. Raises
    FileNotFoundError without ``images.npy``, ValueError for an unreadable file, a wrong
    shape/dtype or a ``filenames.txt`` whose line count differs.
    """
    folder = Path(path)
    file = folder / "images.npy"
    if not file.is_file():
        raise FileNotFoundError(f"{folder} has no images.npy (create it with `poisonlab images prepare`)")
    try:
        x = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {file}: {exc}") from exc
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(f"{file} must hold (N, H, W, 3) uint8 images with N >= 1, got {x.shape} {x.dtype}")
    names = folder / "filenames.txt"
    if names.is_file():
        count = len(names.read_text(encoding="utf-8").splitlines())
        if count != x.shape[0]:
            raise ValueError(f"{names} lists {count} files but {file} holds {x.shape[0]} images")
    return x
