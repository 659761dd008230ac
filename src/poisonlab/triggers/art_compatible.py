"""Pixel and pattern backdoor triggers compatible with IBM ART 1.20.1.

:func:`add_single_bd` and :func:`add_pattern_bd` take the same parameters and, for the inputs ART
handles correctly (float images in ``[0, 1]`` in the layouts ART documents), return exactly what
``art.attacks.poisoning.perturbations.add_single_bd`` / ``add_pattern_bd`` return.  They are the
"small bright patch in a corner" triggers of BadNets (Gu, Dolan-Gavitt and Garg 2017, *BadNets:
Identifying Vulnerabilities in the Machine Learning Model Supply Chain*, arXiv:1708.06733).

See :mod:`poisonlab.triggers._checks` for the accepted dtypes, layouts and intensity scale.
"""

from __future__ import annotations

import numpy as np

from poisonlab.params import BOOLEAN, POSITIVE_INT, UNIT, validated
from poisonlab.triggers._checks import check_image, copy_checked, intensity, nhwc_view

# Pattern pixels as (rows above, columns left of) the anchor at (H - distance, W - distance).
_PATTERN_OFFSETS = ((0, 0), (1, 1), (0, 2), (2, 0))
_CONSTRAINTS = {"distance": [POSITIVE_INT], "pixel_value": [UNIT], "channels_first": [BOOLEAN]}


def _check_distance(distance: int, reach: int, hw: tuple[int, int]) -> int:
    """Check that ``distance`` keeps every marked pixel inside images of size ``hw``."""
    if distance + reach > min(hw):
        raise ValueError(
            f"distance: expected 1 <= distance <= {min(hw) - reach} for images of size "
            f"{hw[0]}x{hw[1]} (HxW), got {distance}"
        )
    return distance


@validated(_CONSTRAINTS)
def add_single_bd(
    x: np.ndarray, distance: int = 2, pixel_value: float = 1, channels_first: bool = False
) -> np.ndarray:
    """Set one pixel ``distance`` pixels from the bottom-right corner, in every channel.

    The marked pixel is at row ``H - distance`` and column ``W - distance`` (so ``distance=1`` is
    the corner pixel itself), as in ART's ``add_single_bd``.

    Parameters
    ----------
    x : numpy.ndarray
        One image or a batch: ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``;
        ``(N, C, H, W)`` / ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]``
        or float in ``[0, 1]``.
    distance : int, default 2
        Distance from the bottom and right edges, ``1 <= distance <= min(H, W)``.
    pixel_value : float, default 1
        Intensity on the unit scale ``[0, 1]``; written as ``pixel_value`` for floats and
        ``round(pixel_value * 255)`` for ``uint8``.
    channels_first : bool, default False
        Whether the channel axis precedes the spatial axes (ART's function has no such option).

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``.

    Raises
    ------
    ValueError
        For an unsupported dtype, values outside the range, an unsupported shape, an NCHW batch
        without ``channels_first=True``, or a ``distance``/``pixel_value`` out of range.

    Notes
    -----
    Differences from ART 1.20.1, where ART is wrong:

    * ART reads every 3-D array as ``(N, H, W)``, so on one ``(H, W, C)`` image it marks row
      ``W - distance`` of column ``C - distance``; here a 3-D array with 1, 3 or 4 entries in its
      last axis is one channels-last image.
    * ART writes ``pixel_value`` as is, so ``pixel_value=1`` on ``uint8`` images gives an almost
      black pixel; here it is 255.
    * ART silently marks the wrong pixels for an ``(N, C, H, W)`` batch and wraps around for a
      ``distance`` larger than the image; both are refused here.
    """
    value = float(pixel_value)
    height, width = nhwc_view(check_image(x), channels_first).shape[1:3]
    distance = _check_distance(distance, 0, (height, width))
    out = copy_checked(x)
    view = nhwc_view(out, channels_first)
    view[:, height - distance, width - distance, :] = intensity(value, out.dtype)
    return out


@validated(_CONSTRAINTS)
def add_pattern_bd(
    x: np.ndarray, distance: int = 2, pixel_value: float = 1, channels_first: bool = False
) -> np.ndarray:
    """Set a four-pixel checkerboard pattern near the bottom-right corner, in every channel.

    With ``r = H - distance`` and ``c = W - distance`` the pattern pixels are ``(r, c)``,
    ``(r - 1, c - 1)``, ``(r, c - 2)`` and ``(r - 2, c)`` (row, column), as in ART's
    ``add_pattern_bd``.

    Parameters
    ----------
    x : numpy.ndarray
        One image or a batch: ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``;
        ``(N, C, H, W)`` / ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]``
        or float in ``[0, 1]``.
    distance : int, default 2
        Distance of the anchor pixel from the bottom and right edges,
        ``1 <= distance <= min(H, W) - 2``.
    pixel_value : float, default 1
        Intensity on the unit scale ``[0, 1]``; written as ``pixel_value`` for floats and
        ``round(pixel_value * 255)`` for ``uint8``.
    channels_first : bool, default False
        Whether the channel axis precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``.

    Raises
    ------
    ValueError
        As :func:`add_single_bd`.

    Notes
    -----
    Differences from ART 1.20.1: as for :func:`add_single_bd` (one ``(H, W, C)`` image, ``uint8``
    intensity, NCHW batches without ``channels_first``, indices wrapping around).  ART ignores
    ``channels_first`` for 3-D input and reads it as ``(N, H, W)``; since all channels are marked,
    that gives the same pixels as reading ``(C, H, W)``, which is what happens here.
    """
    value = float(pixel_value)
    height, width = nhwc_view(check_image(x), channels_first).shape[1:3]
    distance = _check_distance(distance, 2, (height, width))
    rows = [height - distance - dr for dr, _ in _PATTERN_OFFSETS]
    cols = [width - distance - dc for _, dc in _PATTERN_OFFSETS]
    out = copy_checked(x)
    view = nhwc_view(out, channels_first)
    view[:, rows, cols, :] = intensity(value, out.dtype)
    return out
