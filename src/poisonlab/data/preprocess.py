"""One image -> a model-ready array: the chapter's ``resize_imges.py`` preprocessing steps.

EXIF rotation, conversion of any Pillow mode to RGB (alpha composited onto the pad colour, white
by default), a centred square pad and a LANCZOS resize; ITU-R BT.601 luma for grayscale models.
Files are read, within decode-cost limits, by :mod:`poisonlab.data.images`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

# pixels converted at a time from 16/32-bit modes: the float64 temporaries stay at 8 MiB
_DEPTH_BLOCK = 1 << 20
WHITE = (255, 255, 255)
Color = tuple[int, int, int]


def check_color(color: Sequence[int]) -> Color:
    """``color`` as an (R, G, B) tuple of ints; ValueError unless three integers in [0, 255]."""
    rgb = tuple(color)
    if len(rgb) != 3 or not all(isinstance(c, int | np.integer) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"pad colour must be three integers in [0, 255], got {color!r}")
    return tuple(int(c) for c in rgb)  # type: ignore[return-value]


#: the largest output side: 32 for the CIFAR-10 models, 8 for digits; beyond this a typo (100000)
#: would allocate tens of GB per image before anything else could fail
MAX_OUTPUT_SIZE = 1024


def check_output_size(size: int) -> int:
    """``size`` as an int; ValueError unless an integer in 1..:data:`MAX_OUTPUT_SIZE` (not a bool)."""
    if not isinstance(size, int | np.integer) or isinstance(size, bool) or not 1 <= size <= MAX_OUTPUT_SIZE:
        raise ValueError(f"size must be an integer from 1 to {MAX_OUTPUT_SIZE}, got {size!r}")
    return int(size)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Modes I;16*, I, F -> L; 16-bit data scaled by 1/257.

    Converted in blocks: a float64 copy of the whole image would take 8 bytes per pixel.
    """
    native = np.asarray(img)
    scale = img.mode.startswith("I;16") or native.max(initial=0) > 255
    flat, out = native.reshape(-1), np.empty(native.size, np.uint8)
    for start in range(0, flat.size, _DEPTH_BLOCK):
        arr = flat[start : start + _DEPTH_BLOCK].astype(np.float64)
        if scale:
            arr = np.clip(arr, 0, 65535) / 257.0
        out[start : start + _DEPTH_BLOCK] = np.rint(np.clip(arr, 0, 255)).astype(np.uint8)
    return Image.fromarray(out.reshape(native.shape))


def to_rgb(img: Image.Image, pad_color: Sequence[int] = WHITE) -> Image.Image:
    """Any Pillow mode (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F) -> RGB.

    Alpha and palette/colour-key transparency are composited onto ``pad_color``.
    """
    color = check_color(pad_color)
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
    canvas = Image.new("RGB", (side, side), check_color(pad_color))
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
    size, color = check_output_size(size), check_color(pad_color)
    if img.width < 1 or img.height < 1:
        raise ValueError(f"image has no pixels ({img.width}x{img.height})")
    square = pad_to_square(to_rgb(ImageOps.exif_transpose(img), color), color)
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.array(square, dtype=np.uint8)


def rgb_to_gray(x: np.ndarray) -> np.ndarray:
    """uint8 RGB images (..., 3) -> uint8 grayscale (..., 1) with ITU-R BT.601 weights, rounded
    (Pillow's ``convert("L")`` may differ by one level through its integer arithmetic)."""
    if x.dtype != np.uint8 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (..., 3), got {x.dtype} {x.shape}")
    gray = np.round(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return gray.astype(np.uint8)[..., None]
