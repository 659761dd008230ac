"""Blended-key trigger of Chen et al. 2017.

Chen, Liu, Li, Lu and Song, *Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning*, arXiv:1712.05526: instead of a visible patch, a full-size key pattern (a picture or
random noise) is alpha-blended over the whole input, ``x' = (1 - alpha) * x + alpha * k``; with a
small ``alpha`` the poisoned images look almost clean.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from poisonlab.params import BOOLEAN, PATH, SEED, UNIT, InstanceOf, validated
from poisonlab.triggers._checks import check_image, check_range, nhwc_view

_PIL_MODES = {1: "L", 3: "RGB"}


def _pattern_from_file(path: str | os.PathLike, hwc: tuple[int, int, int]) -> np.ndarray:
    """Read an image, convert it to the images' colour mode and resize it to ``(H, W)``."""
    height, width, channels = hwc
    if channels not in _PIL_MODES:
        raise ValueError(f"pattern: an image file needs 1- or 3-channel images, got {channels} channels")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pattern: expected an existing image file, got {os.fspath(path)!r}")
    try:
        with Image.open(path) as image:
            picture = image.convert(_PIL_MODES[channels]).resize((width, height))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"pattern: expected an image file Pillow can read, got {os.fspath(path)!r}") from exc
    return np.asarray(picture, dtype=np.float64).reshape(height, width, channels) / 255.0


def _pattern_from_array(pattern: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    """Check an array key (uint8 or float in [0, 1]) and return it as float64 ``(H, W, C|1)``."""
    check_image(pattern, "pattern")
    check_range(pattern, "pattern")
    height, width, channels = hwc
    key = pattern[..., None] if pattern.ndim == 2 else pattern
    if key.ndim != 3 or key.shape[:2] != (height, width) or key.shape[2] not in (1, channels):
        raise ValueError(
            f"pattern: expected an array of shape ({height}, {width}), ({height}, {width}, 1) or "
            f"({height}, {width}, {channels}) matching the images, got {pattern.shape}"
        )
    key = key.astype(np.float64)
    return key / 255.0 if pattern.dtype == np.uint8 else key


def make_pattern(pattern: object, hwc: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Build the key pattern as float64 ``(H, W, C)`` (or ``(H, W, 1)``) in ``[0, 1]``.

    ``None`` gives uniform noise from ``numpy.random.default_rng(seed)`` (the same key for every
    image of a given shape), a path an image resized to ``(H, W)`` with Pillow, an array itself.
    """
    if pattern is None:
        return np.random.default_rng(seed).random(hwc)
    if isinstance(pattern, (str, os.PathLike)):
        return _pattern_from_file(pattern, hwc)
    return _pattern_from_array(pattern, hwc)  # type: ignore[arg-type]


@validated(
    {
        "pattern": [None, PATH, InstanceOf(np.ndarray, "a numpy array")],
        "alpha": [UNIT],
        "seed": [SEED],
        "channels_first": [BOOLEAN],
    }
)
def blend_pattern(
    x: np.ndarray,
    pattern: str | os.PathLike | np.ndarray | None = None,
    alpha: float = 0.1,
    seed: int = 0,
    channels_first: bool = False,
) -> np.ndarray:
    """Alpha-blend a full-size key pattern over every image (Chen et al. 2017).

    ``out = (1 - alpha) * x + alpha * pattern``, computed on the unit scale.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``; ``(N, C, H, W)`` /
        ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]``.
    pattern : None, str, os.PathLike or numpy.ndarray, default None
        The key.  ``None``: seeded uniform noise in ``[0, 1)`` of shape ``(H, W, C)``.  A path: an
        image file read with Pillow, converted to ``"L"`` or ``"RGB"`` and resized to ``(H, W)``.
        An array: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, C)`` (channels last), ``uint8`` or float in
        ``[0, 1]``.
    alpha : float, default 0.1
        Blend ratio in ``[0, 1]``: 0 leaves the images unchanged, 1 replaces them by the key.
    seed : int, default 0
        Seed of the noise key when ``pattern`` is ``None``.
    channels_first : bool, default False
        Whether the channel axis of ``x`` precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``; ``uint8`` results are rounded to the
        nearest level, float results are clipped to ``[0, 1]`` against rounding error.

    Raises
    ------
    FileNotFoundError
        If ``pattern`` is a path that does not exist.
    ValueError
        For a bad dtype, range or shape of ``x`` or of the key, an unreadable file or ``alpha``
        outside ``[0, 1]``.
    """
    alpha = float(alpha)
    batch, height, width, channels = nhwc_view(check_image(x), channels_first).shape
    key = make_pattern(pattern, (height, width, channels), seed)
    check_range(x)
    work = np.dtype(np.float32) if x.dtype in (np.uint8, np.float16) else x.dtype
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    mixed = nhwc_view(x, channels_first).astype(work)
    mixed *= work.type(1 - alpha)
    mixed += (key * (alpha * scale)).astype(work)
    if x.dtype == np.uint8:
        np.rint(mixed, out=mixed)
    np.clip(mixed, 0, scale, out=mixed)
    out = np.empty(x.shape, dtype=x.dtype)
    nhwc_view(out, channels_first)[...] = mixed
    return out
