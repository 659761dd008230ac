"""Image files -> model-ready arrays, following the chapter's ``resize_imges.py``.

Each image is EXIF-rotated, converted to RGB (alpha composited onto the pad colour, white by
default), padded to a centred square and LANCZOS-resized. Unreadable files are skipped.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from poisonlab.data.dataset import Dataset

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 40_000_000
WHITE = (255, 255, 255)
Color = tuple[int, int, int]


class SkippedImagesWarning(UserWarning):
    """Some image files could not be read and were left out."""


class ImageTooLargeError(ValueError):
    """An image over the pixel limit, refused before its pixels were decoded."""


def _check_color(color: Sequence[int]) -> Color:
    rgb = tuple(color)
    if len(rgb) != 3 or not all(isinstance(c, int | np.integer) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"pad colour must be three integers in [0, 255], got {color!r}")
    return tuple(int(c) for c in rgb)  # type: ignore[return-value]


def _check_size(size: int) -> int:
    if not isinstance(size, int | np.integer) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return int(size)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Modes I;16*, I, F -> L; 16-bit data scaled by 1/257."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
        arr = np.clip(arr, 0, 65535) / 257.0
    return Image.fromarray(np.rint(np.clip(arr, 0, 255)).astype(np.uint8))


def to_rgb(img: Image.Image, pad_color: Sequence[int] = WHITE) -> Image.Image:
    """Any Pillow mode (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F) -> RGB.

    Alpha and palette/colour-key transparency are composited onto ``pad_color``.
    """
    color = _check_color(pad_color)
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, color)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def pad_to_square(img: Image.Image, pad_color: Sequence[int] = WHITE) -> Image.Image:
    """Centre an RGB image on a ``pad_color`` square of side ``max(w, h)``.

    Left/top padding is ``floor(pad / 2)``; right/bottom take the remainder.
    """
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), _check_color(pad_color))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def preprocess_image(img: Image.Image, size: int = 32, pad_color: Sequence[int] = WHITE) -> np.ndarray:
    """EXIF-rotate, convert to RGB, pad to a centred square and LANCZOS-resize.

    Parameters
    ----------
    img : PIL.Image.Image
        Any mode, any size (width and height >= 1).
    size : int
        Output side length; a square input of exactly this side is returned unchanged.
    pad_color : (int, int, int)
        Padding and alpha-background colour, RGB in [0, 255]; white by default.

    Returns
    -------
    np.ndarray
        Shape (size, size, 3), dtype uint8, values in [0, 255].
    """
    size, color = _check_size(size), _check_color(pad_color)
    if img.width < 1 or img.height < 1:
        raise ValueError(f"image has no pixels ({img.width}x{img.height})")
    square = pad_to_square(to_rgb(ImageOps.exif_transpose(img), color), color)
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.array(square, dtype=np.uint8)


def _decode_checked(source: str | os.PathLike[str] | io.BytesIO, size: int, color: Color, max_pixels: int):
    """Open ``source``, refuse it over ``max_pixels`` from its header alone, then decode and preprocess.

    The guard shared by :func:`load_image_file` and :func:`load_image_bytes`. Raises
    :class:`ImageTooLargeError` over the limit (also for Pillow's own decompression-bomb check)
    and ``ValueError`` for anything unreadable; the messages read as predicates ("not an image
    ...") so that callers can prefix a name.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageTooLargeError(
                        f"{w}x{h} = {w * h:,} pixels, over the {max_pixels:,}-pixel limit "
                        "(decompression-bomb protection)"
                    )
                img.load()
                return preprocess_image(img, size, color)
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"over Pillow's decompression-bomb limit ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not an image in a known format") from exc
    except Exception as exc:  # Pillow decoders raise many types on corrupt input
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from exc


def load_image_file(
    path: str | os.PathLike[str],
    size: int = 32,
    pad_color: Sequence[int] = WHITE,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Read and preprocess one image file (see :func:`preprocess_image`).

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
        ``max_pixels`` pixels, checked before decoding (decompression-bomb protection).
    """
    p = Path(path)
    size, color = _check_size(size), _check_color(pad_color)
    if not p.is_file():
        raise FileNotFoundError(f"no such image file: {p}")
    try:
        return _decode_checked(p, size, color, max_pixels)
    except ValueError as exc:
        raise type(exc)(f"cannot read image {p.name}: {exc}") from exc


def load_image_bytes(
    data: bytes,
    *,
    size: int = 32,
    max_pixels: int = MAX_IMAGE_PIXELS,
    pad_color: Sequence[int] = WHITE,
) -> np.ndarray:
    """Decode and preprocess one image file's bytes (an upload), like :func:`load_image_file`.

    Parameters
    ----------
    data : bytes
        The whole file, any format Pillow reads.
    size, pad_color
        As for :func:`preprocess_image`.
    max_pixels : int
        Largest width x height decoded; checked from the header before any pixel is decoded.

    Returns
    -------
    np.ndarray
        Shape (size, size, 3), dtype uint8, values in [0, 255].

    Raises
    ------
    ImageTooLargeError
        Over ``max_pixels`` (a ValueError).
    ValueError
        ``data`` is not bytes, is empty, or is not a readable image (corrupt, truncated,
        unsupported). Messages read as predicates, e.g. "not an image in a known format".
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected the image file as bytes, got {type(data).__name__}")
    size, color = _check_size(size), _check_color(pad_color)
    if len(data) == 0:
        raise ValueError("empty (0 bytes)")
    return _decode_checked(io.BytesIO(bytes(data)), size, color, max_pixels)


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


def resolve_label(label: str | int, class_names: Sequence[str]) -> int:
    """Class index of ``label``: a class name, an integer index or a digit string."""
    names = [str(c) for c in class_names]
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, int | np.integer) or (isinstance(label, str) and label.isdigit()):
        idx = int(label)
        if 0 <= idx < len(names):
            return idx
        raise ValueError(f"label index {idx} out of range [0, {len(names) - 1}]")
    raise ValueError(f"unknown label {label!r}; expected one of {names} or an index")


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
        raise ValueError(f"{root} has no class sub-folders; for a flat folder give a label and class names")
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
    size, color = _check_size(size), _check_color(pad_color)
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
    size, color = _check_size(size), _check_color(pad_color)
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


def rgb_to_gray(x: np.ndarray) -> np.ndarray:
    """uint8 RGB images (..., 3) -> uint8 grayscale (..., 1) with ITU-R BT.601 weights, rounded
    (Pillow's ``convert("L")`` may differ by one level through its integer arithmetic)."""
    if x.dtype != np.uint8 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (..., 3), got {x.dtype} {x.shape}")
    gray = np.round(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return gray.astype(np.uint8)[..., None]
