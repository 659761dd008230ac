"""Trojan-style watermark: a fixed random binary logo blended over the image.

Liu, Ma, Aafer, Lee, Zhai, Wang and Zhang, *Trojaning Attack on Neural Networks*, NDSS 2018:
besides a square, the paper's triggers are a logo and a *watermark*, a binary shape laid over the
image and blended with it so the content stays readable.  Here the shape is a random binary logo
drawn once from a seed on a ``cells x cells`` lattice (each cell on with probability
``density``, at least one on), stretched to the image size (nearest neighbour, so it scales to any
image) and blended towards a fixed grey level: ``out = x + alpha * mask * (value - x)``.  The
paper optimises the logo's pixel values against a trained model; this trigger keeps the shape and
the blend and leaves out the optimisation (an attack that needs no model).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from poisonlab.params import BOOLEAN, SEED, UNIT, Interval, validated
from poisonlab.triggers._checks import check_image, check_range, nhwc_view


def watermark_logo(
    height: int, width: int, cells: int = 8, density: float = 0.3, seed: int = 0
) -> np.ndarray:
    """The binary logo stretched to ``(height, width)``.

    Parameters
    ----------
    height, width : int
        Image size in pixels (>= 1).
    cells : int, default 8
        Side of the lattice the logo is drawn on (>= 1).
    density : float, default 0.3
        Probability that a lattice cell belongs to the logo, in ``[0, 1]``; at least one cell does.
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` drawing the logo.

    Returns
    -------
    numpy.ndarray
        bool ``(height, width)``; True where the logo is.
    """
    draw = np.random.default_rng(seed).random((cells, cells))
    lattice = draw < density
    if not lattice.any():
        lattice[np.unravel_index(np.argmin(draw), draw.shape)] = True
    rows = np.arange(height) * cells // height
    cols = np.arange(width) * cells // width
    return lattice[rows[:, None], cols[None, :]]


@validated(
    {
        "alpha": [UNIT],
        "value": [UNIT],
        "cells": [Interval(Integral, 1, None, closed="left")],
        "density": [UNIT],
        "seed": [SEED],
        "channels_first": [BOOLEAN],
    }
)
def watermark(
    x: np.ndarray,
    alpha: float = 0.4,
    value: float = 1.0,
    cells: int = 8,
    density: float = 0.3,
    seed: int = 0,
    channels_first: bool = False,
) -> np.ndarray:
    """Blend a fixed random binary logo over every image (Trojan-style watermark, Liu et al. 2018).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``; ``(N, C, H, W)`` /
        ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]``.
    alpha : float, default 0.4
        Blend ratio on the logo in ``[0, 1]`` (0: unchanged, 1: the logo painted opaque).
    value : float, default 1.0
        Grey level of the logo on the unit scale (1 = white), the same on every channel.
    cells, density, seed
        The logo (see :func:`watermark_logo`).
    channels_first : bool, default False
        Whether the channel axis of ``x`` precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``; pixels off the logo are unchanged, on the
        logo ``x + alpha * (value - x)``, rounded to the nearest level for ``uint8``.

    Raises
    ------
    ValueError
        For a bad dtype, range or shape of ``x`` or a bad parameter.
    """
    view = nhwc_view(check_image(x), channels_first)
    check_range(x)
    logo = watermark_logo(view.shape[1], view.shape[2], cells, float(density), seed)
    work = np.dtype(np.float32) if x.dtype in (np.uint8, np.float16) else x.dtype
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    weight = (logo * float(alpha)).astype(work)[None, :, :, None]
    src = view.astype(work)
    mixed = src + weight * (work.type(float(value) * scale) - src)
    if x.dtype == np.uint8:
        np.rint(mixed, out=mixed)
    np.clip(mixed, 0, scale, out=mixed)
    out = np.empty(x.shape, dtype=x.dtype)
    nhwc_view(out, channels_first)[...] = mixed
    return out
