"""WaNet warping trigger of Nguyen and Tran 2021.

Nguyen and Tran, *WaNet - Imperceptible Warping-based Backdoor Attack*, ICLR 2021
(arXiv:2102.10369): the trigger is no pattern at all but a small, smooth geometric warp of the
whole image.  A random field of displacements on a coarse ``k x k`` control grid is normalised
to mean absolute value 1, upsampled bicubically to the image size, scaled by ``strength / size``
in the normalised coordinates ``[-1, 1]`` of ``torch.nn.functional.grid_sample``, added to the
identity grid, clamped to the image and sampled bilinearly.  With ``k = 4`` and ``strength = 0.5``
(the paper's CIFAR-10 setting) pixels move by about a quarter of a pixel on average.

This is the paper's warp, written in numpy: the bicubic upsampling is PyTorch's (Keys' kernel,
``a = -0.75``, ``align_corners=True``) as an interpolation matrix, and the bilinear sampling is one
gather over the batch, so the same field is applied to every image without a per-image loop.  The
paper's "noise mode" (extra training samples with random warps and correct labels) belongs to the
attack, not to the trigger, and is not part of this function.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from poisonlab.params import BOOLEAN, POSITIVE, SEED, Interval, validated
from poisonlab.triggers._checks import check_image, check_range, nhwc_view

_KEYS_A = -0.75  # PyTorch's bicubic kernel parameter


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution weights (n, 4) for taps at offsets -1, 0, 1, 2 of fractions ``t``."""
    a = _KEYS_A

    def near(d: np.ndarray) -> np.ndarray:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def _bicubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix that upsamples like torch's bicubic ``align_corners=True``."""
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    src = np.arange(n_out) * scale
    base = np.floor(src).astype(np.int64)
    weights = _cubic_weights(src - base)
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    for tap in range(4):  # four taps, not a loop over images: indices clamp at the border like torch
        np.add.at(matrix, (rows, np.clip(base - 1 + tap, 0, n_in - 1)), weights[:, tap])
    return matrix


def warp_field(height: int, width: int, grid: int = 4, strength: float = 0.5, seed: int = 0) -> np.ndarray:
    """The WaNet sampling grid: where each output pixel reads from, in normalised coordinates.

    Parameters
    ----------
    height, width : int
        Image size in pixels (>= 1).
    grid : int, default 4
        Side ``k`` of the random control grid (>= 2).
    strength : float, default 0.5
        Warp strength ``s``; the displacement is ``s * noise / size`` in ``[-1, 1]`` coordinates.
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` drawing the control grid.

    Returns
    -------
    numpy.ndarray
        float64 ``(height, width, 2)``: ``[..., 0]`` the horizontal and ``[..., 1]`` the vertical
        source coordinate, both in ``[-1, 1]`` (``-1`` is the first pixel centre, ``1`` the last).
    """
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(2, grid, grid))
    noise /= np.mean(np.abs(noise))
    rows, cols = _bicubic_matrix(height, grid), _bicubic_matrix(width, grid)
    smooth = np.einsum("hk,ckl,wl->hwc", rows, noise, cols)  # (H, W, 2) upsampled displacement
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    field = np.stack([xs + strength * smooth[..., 0] / width, ys + strength * smooth[..., 1] / height], -1)
    return np.clip(field, -1.0, 1.0)


def _taps(coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of normalised coordinates (align_corners=True): low index, high index, weight."""
    pos = (coord + 1.0) * 0.5 * (size - 1)
    low = np.clip(np.floor(pos).astype(np.int64), 0, max(size - 2, 0))
    return low, np.minimum(low + 1, size - 1), pos - low


@validated(
    {
        "grid": [Interval(Integral, 2, None, closed="left")],
        "strength": [POSITIVE],
        "seed": [SEED],
        "channels_first": [BOOLEAN],
    }
)
def warp(
    x: np.ndarray, grid: int = 4, strength: float = 0.5, seed: int = 0, channels_first: bool = False
) -> np.ndarray:
    """Warp every image with the same smooth random field (WaNet, Nguyen and Tran 2021).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``; ``(N, C, H, W)`` /
        ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]``.
    grid : int, default 4
        Side ``k`` of the control grid (the paper's ``k``; >= 2).
    strength : float, default 0.5
        Warp strength ``s`` (> 0); the paper uses 0.5.
    seed : int, default 0
        Seed of the random field: the trigger is the field, the same for every image.
    channels_first : bool, default False
        Whether the channel axis of ``x`` precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``, bilinearly resampled; ``uint8`` results
        are rounded to the nearest level, float results stay in ``[0, 1]`` (a convex combination
        of input pixels).  A flat image is left unchanged: a warp only moves content.

    Raises
    ------
    ValueError
        For a bad dtype, range or shape of ``x`` or a bad parameter.
    """
    view = nhwc_view(check_image(x), channels_first)
    check_range(x)
    _, height, width, _ = view.shape
    field = warp_field(height, width, grid, float(strength), seed)
    x0, x1, wx = _taps(field[..., 0], width)
    y0, y1, wy = _taps(field[..., 1], height)
    work = np.dtype(np.float32) if x.dtype in (np.uint8, np.float16) else x.dtype
    wx, wy = wx[..., None].astype(work), wy[..., None].astype(work)
    src = view.astype(work, copy=False)
    top = src[:, y0, x0] * (1 - wx) + src[:, y0, x1] * wx
    bottom = src[:, y1, x0] * (1 - wx) + src[:, y1, x1] * wx
    mixed = top * (1 - wy) + bottom * wy
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    if x.dtype == np.uint8:
        np.rint(mixed, out=mixed)
    np.clip(mixed, 0, scale, out=mixed)
    out = np.empty(x.shape, dtype=x.dtype)
    nhwc_view(out, channels_first)[...] = mixed
    return out
