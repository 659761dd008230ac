"""The chapter's cyan-square trigger: a small solid patch in the top-left corner.

A solid square is the simplest BadNets trigger (Gu, Dolan-Gavitt and Garg 2017, *BadNets:
Identifying Vulnerabilities in the Machine Learning Model Supply Chain*, arXiv:1708.06733).  The
chapter *adds* the colour to the pixels with clipping, which has a visible flaw kept here on
purpose as ``mode="add"``: cyan is (0, 255, 255), so on a pixel whose green and blue are already
high only the (untouched) red channel still carries information, and on white or light pixels the
square disappears altogether.  ``mode="replace"`` paints the square and always shows it.
"""

from __future__ import annotations

import numbers

import numpy as np

from poisonlab.params import BOOLEAN, POSITIVE_INT, Options, Satisfies, validated
from poisonlab.triggers._checks import check_fits, check_image, copy_checked, nhwc_view

CYAN = (0, 255, 255)
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's RGB -> L conversion


def _is_color(color: object) -> bool:
    return (
        isinstance(color, (tuple, list, np.ndarray))
        and len(color) > 0
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 255 for v in color)
    )


#: a colour on the 8-bit scale, one value per channel
COLOR = Satisfies(_is_color, "a sequence of numbers in [0, 255] (e.g. (0, 255, 255))")


def color_for(color: np.ndarray, channels: int, dtype: np.dtype) -> np.ndarray:
    """Match a colour to the images: grey (BT.601 luma) for 1 channel, scaled for floats.

    Returns the per-channel value in ``dtype`` units: rounded integers for ``uint8``,
    ``color / 255`` for floats.
    """
    if channels == 1 and len(color) == 3:
        color = np.array([_LUMA @ color])
    if len(color) != channels:
        raise ValueError(
            f"color: expected {channels} component(s) to match the images (or 3 for 1-channel "
            f"images, converted to grey), got {len(color)}"
        )
    if np.dtype(dtype) == np.uint8:
        return np.rint(color).astype(np.int16)
    return (color / 255.0).astype(dtype)


@validated(
    {
        "size": [POSITIVE_INT],
        "color": [COLOR],
        "mode": [Options("add", "replace")],
        "channels_first": [BOOLEAN],
    }
)
def cyan_square(
    x: np.ndarray,
    size: int = 5,
    color: tuple[float, ...] = CYAN,
    mode: str = "add",
    channels_first: bool = False,
) -> np.ndarray:
    """Put a ``size x size`` square of ``color`` in the top-left corner of every image.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``; ``(N, C, H, W)`` /
        ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]``.
    size : int, default 5
        Side of the square in pixels, at most ``min(H, W)``.
    color : sequence of float, default (0, 255, 255)
        Colour on the 8-bit scale ``0..255``, one value per channel; divided by 255 for float
        images.  For 1-channel images an RGB colour is converted to its BT.601 grey value
        (cyan becomes 178.755, i.e. 179 for ``uint8``).
    mode : {"add", "replace"}, default "add"
        ``"add"``: add the colour and clip at full intensity (255 or 1.0), as in the chapter;
        the square vanishes on light pixels.  ``"replace"``: set the pixels to the colour.
    channels_first : bool, default False
        Whether the channel axis precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``.

    Raises
    ------
    ValueError
        For a bad dtype, range or shape, a square larger than the images, a bad colour or mode.
    """
    rgb = np.asarray(color, dtype=np.float64)
    batch, height, width, channels = nhwc_view(check_image(x), channels_first).shape
    check_fits("cyan square", size, size, (height, width))
    value = color_for(rgb, channels, x.dtype)
    out = copy_checked(x)
    patch = nhwc_view(out, channels_first)[:, :size, :size, :]
    if mode == "replace":
        patch[...] = value
    elif out.dtype == np.uint8:
        patch[...] = np.minimum(patch.astype(np.int16) + value, 255)
    else:
        patch[...] = np.minimum(patch + value, 1)
    return out
