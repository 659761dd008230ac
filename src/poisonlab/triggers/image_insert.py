"""Image-insertion backdoor trigger, output-identical to IBM ART 1.20.1's ``insert_image``.

ART composites each image with Pillow in a Python loop: the image is truncated to 8 bits, the
trigger (read as RGBA, optionally resized) is pasted through its own alpha onto a transparent layer,
that layer is alpha-composited over the image, the result is blended with the image by ``blend``
and converted to ``mode``.  Every step is a per-pixel function of the image's 8-bit level, the
trigger pixel above it and the (fixed) trigger, so for a given trigger, ``mode`` and ``blend`` the
whole pipeline is a lookup table ``lut[row, col, channel, level]`` of the trigger's size.  We build
that table once (cached) by running the very same Pillow operations on a probe image holding all
256 levels under copies of the trigger, then apply it to all images at once with array indexing.
The result is bit-identical to Pillow's arithmetic (rounding included) at any batch size.

Patch triggers like this one are the BadNets attack (Gu, Dolan-Gavitt and Garg 2017, *BadNets:
Identifying Vulnerabilities in the Machine Learning Model Supply Chain*, arXiv:1708.06733).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from poisonlab.params import (
    BOOLEAN,
    NON_NEGATIVE_INT,
    PATH,
    SEED,
    UNIT,
    InstanceOf,
    Options,
    Satisfies,
    check_param,
    validated,
)
from poisonlab.triggers._checks import check_fits, check_image, dequantize, nhwc_view, quantize_checked
from poisonlab.triggers._paths import default_trigger_path

DEFAULT_BACKDOOR_PATH = default_trigger_path("alert")
_MODES = {1: "L", 3: "RGB"}


def _is_hw_pair(size: object) -> bool:
    return (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(NON_NEGATIVE_INT.is_satisfied_by(v) and v >= 1 for v in size)
    )


#: ``size`` of :func:`insert_image`: keep the file's size, pick one, or (height, width)
SIZE = [None, Options("auto"), Satisfies(_is_hw_pair, "a (height, width) pair of integers >= 1")]


def auto_trigger_size(height: int, width: int) -> tuple[int, int]:
    """Side used by ``size="auto"``: ``max(3, min(H, W) // 4)`` (2 on 2-pixel images), square.

    8x8 digits get a 3x3 trigger, 28x28 images 7x7 and 32x32 images 8x8.
    """
    side = min(max(3, min(height, width) // 4), height, width)
    return side, side


def resolve_mode(mode: str | None, channels: int) -> str:
    """Check ``mode`` against the channel count; ``None`` picks ``"L"`` or ``"RGB"``."""
    if channels not in _MODES:
        raise ValueError(
            f"insert_image: expected images with 1 channel (mode 'L') or 3 channels (mode 'RGB'), "
            f"got {channels} channels"
        )
    if mode is None:
        return _MODES[channels]
    if mode != _MODES[channels]:
        raise ValueError(
            f"mode: {mode!r} needs {'1-channel' if mode == 'L' else '3-channel'} images, got "
            f"{channels} channels; pass mode={_MODES[channels]!r} or mode=None"
        )
    return mode


def resolve_size(size: object, image_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The trigger size for images of ``image_hw``: ``None`` (keep), ``"auto"`` or ``(height, width)``."""
    if size is None:
        return None
    if size == "auto":
        return auto_trigger_size(*image_hw)
    return int(size[0]), int(size[1])  # type: ignore[index]


def _trigger_key(path: object) -> tuple[str, int]:
    """Return ``(path, mtime_ns)`` for the cache, or raise ``FileNotFoundError``."""
    path = os.fspath(check_param("backdoor_path", path, PATH))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backdoor_path: expected an existing image file, got {path!r}")
    return path, os.stat(path).st_mtime_ns


@contextlib.contextmanager
def _open_trigger(path: object) -> Iterator[Image.Image]:
    """Open a trigger file with Pillow, turning read failures into ``ValueError``."""
    path, _ = _trigger_key(path)
    try:
        with Image.open(path) as image:
            yield image
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(
            f"backdoor_path: expected an image file Pillow can read, got {path!r} ({exc})"
        ) from exc


def load_trigger(path: object, size: tuple[int, int] | None = None) -> Image.Image:
    """Read a trigger image as RGBA and resize it to ``size = (height, width)`` as ART does.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not an existing file.
    ValueError
        If Pillow cannot read it.
    """
    with _open_trigger(path) as image:
        trigger = image.convert("RGBA")
    if size is not None:
        trigger = trigger.resize((size[1], size[0]))  # Pillow sizes are (width, height)
    return trigger


def trigger_hw(path: object, size: tuple[int, int] | None) -> tuple[int, int]:
    """``(height, width)`` the trigger will have: ``size``, or the file's, read from its header."""
    if size is not None:
        return size
    with _open_trigger(path) as image:
        width, height = image.size
    return height, width


def _probe_lut(trigger: Image.Image, mode: str, blend: float) -> np.ndarray:
    """Run ART's Pillow pipeline on all 256 levels; return ``lut[row, col, channel, level]``."""
    width, height = trigger.size
    layer = Image.new("RGBA", (width, height), 0)
    layer.paste(trigger, (0, 0), mask=trigger)
    layers = Image.fromarray(np.tile(np.asarray(layer), (256, 1, 1)))
    levels = np.repeat(np.arange(256, dtype=np.uint8), height * width).reshape(256 * height, width)
    probe = Image.fromarray(levels if mode == "L" else np.stack([levels] * 3, axis=-1))
    original = Image.new("RGBA", (width, 256 * height), 0)
    original.paste(probe)
    composite = Image.alpha_composite(original, layers)
    result = np.asarray(Image.blend(original, composite, blend).convert(mode))
    return np.ascontiguousarray(np.moveaxis(result.reshape(256, height, width, -1), 0, -1))


@functools.lru_cache(maxsize=32)
def _cached_lut(
    path: str, mtime_ns: int, size: tuple[int, int] | None, mode: str, blend: float
) -> np.ndarray:
    del mtime_ns  # part of the cache key only: an edited trigger file is read again
    lut = _probe_lut(load_trigger(path, size), mode, blend)
    lut.flags.writeable = False
    return lut


def composite_lut(path: object, size: tuple[int, int] | None, mode: str, blend: float) -> np.ndarray:
    """Lookup table ``(trigger_h, trigger_w, channels, 256)`` of ``uint8`` output levels (cached)."""
    return _cached_lut(*_trigger_key(path), None if size is None else tuple(size), mode, blend)


def _positions(n, image_hw, trigger_hw, random, x_shift, y_shift, seed, rng):
    """Top-left corners ``(xs, ys)``: ints for a fixed place, ``(n,)`` arrays for random ones."""
    (height, width), (th, tw) = image_hw, trigger_hw
    if not random:
        if x_shift + tw > width or y_shift + th > height:
            raise ValueError(
                f"x_shift/y_shift: a {th}x{tw} (HxW) trigger at x_shift={x_shift}, y_shift={y_shift} "
                f"does not fit inside {height}x{width} images; expected x_shift <= {width - tw} "
                f"and y_shift <= {height - th}"
            )
        return int(x_shift), int(y_shift)  # plain ints: _apply takes the slicing path for them
    if seed is not None and rng is not None:
        raise ValueError("give at most one of seed and rng, got both")
    bounds = np.tile(np.array([width - tw + 1, height - th + 1], dtype=np.int64), n)
    if seed is None and rng is None:
        draws = np.random.randint(bounds)  # ART's order: x then y, image after image
    else:
        draws = (rng if rng is not None else np.random.default_rng(seed)).integers(0, bounds)
    return draws[0::2], draws[1::2]


def _apply(levels: np.ndarray, out: np.ndarray, lut: np.ndarray, xs, ys) -> None:
    """Replace the trigger area of ``out`` (NHWC view) with ``lut`` applied to ``levels``."""
    th, tw, channels = lut.shape[:3]
    offsets = (np.arange(th * tw * channels, dtype=np.intp) * 256).reshape(th, tw, channels)
    if isinstance(xs, int):
        where = (slice(None), slice(ys, ys + th), slice(xs, xs + tw))
    else:
        where = (
            np.arange(len(xs))[:, None, None],
            (ys[:, None] + np.arange(th))[:, :, None],
            (xs[:, None] + np.arange(tw))[:, None, :],
        )
    new_levels = np.take(lut.reshape(-1), offsets + levels[where])
    out[where] = dequantize(new_levels, out.dtype)


@validated(
    {
        "backdoor_path": [PATH],
        "channels_first": [BOOLEAN],
        "random": [BOOLEAN],
        "x_shift": [NON_NEGATIVE_INT],
        "y_shift": [NON_NEGATIVE_INT],
        "size": SIZE,
        "mode": [Options(None, "L", "RGB")],
        "blend": [UNIT],
        "seed": [None, SEED],
        "rng": [None, InstanceOf(np.random.Generator, "a numpy.random.Generator")],
    }
)
def insert_image(
    x: np.ndarray,
    backdoor_path: str | os.PathLike = DEFAULT_BACKDOOR_PATH,
    channels_first: bool = False,
    random: bool = True,
    x_shift: int = 0,
    y_shift: int = 0,
    size: tuple[int, int] | str | None = None,
    mode: str | None = "L",
    blend: float = 0.8,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Paste a trigger image onto every image, alpha-composited and blended, as ART does.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)`` with ``C`` 1 or 3;
        ``(N, C, H, W)`` / ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]``
        or float in ``[0, 1]``.
    backdoor_path : str or os.PathLike, default the shipped ``alert.png``
        Trigger image; read with Pillow and converted to RGBA.  Its alpha channel is the paste
        mask: fully transparent pixels leave the image unchanged, opaque ones (black included)
        replace it before blending.
    channels_first : bool, default False
        Whether the channel axis precedes the spatial axes.
    random : bool, default True
        Place the trigger at a uniformly random position (fully inside) in each image.
    x_shift, y_shift : int, default 0
        Column and row of the trigger's top-left corner when ``random=False``.
    size : (int, int) or "auto" or None, default None
        Trigger size as ``(height, width)`` (as in ART, which swaps it for Pillow); Pillow's
        default resampling is used.  ``None`` keeps the file's size; ``"auto"`` uses a square of
        side ``max(3, min(H, W) // 4)`` (see :func:`auto_trigger_size`).
    mode : {"L", "RGB", None}, default "L"
        Pillow mode of the images: ``"L"`` for 1 channel (the trigger is composited in colour and
        converted to grey, as in ART), ``"RGB"`` for 3; ``None`` picks it from the channel count.
    blend : float, default 0.8
        Weight of the composited image against the original, in ``[0, 1]``.
    seed, rng : int or numpy.random.Generator, optional
        With ``random=True``: the source of the positions (at most one of them).  When both are
        ``None`` the positions come from numpy's global ``np.random.randint`` in ART's order
        (x then y for each image in turn), so seeding ``np.random`` reproduces ART exactly.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``.  Float images come back quantised to 8 bits
        like ART's output (``floor(x * 255) / 255`` outside the trigger); ``uint8`` images keep
        their values outside the trigger.

    Raises
    ------
    FileNotFoundError
        If ``backdoor_path`` does not exist.
    ValueError
        For a bad dtype, range or shape, an unreadable trigger file, a trigger or shift that does
        not fit the images, ``blend`` outside ``[0, 1]`` or a ``mode`` that does not match ``C``.

    Notes
    -----
    Bit-identical to ART 1.20.1 for float input in the layouts ART accepts (equal ``np.random``
    state for ``random=True``), without ART's Python loop.  Where ART is wrong we differ: ART
    returns garbage for ``uint8`` input (it multiplies by 255 again and divides the result), rejects
    2-D and ``(N, H, W)`` input, and silently crops a trigger shifted past the border; here ``uint8``
    is processed on its own scale, those shapes are accepted and the crop is refused.
    """
    blend = float(blend)
    batch, height, width, channels = nhwc_view(check_image(x), channels_first).shape
    mode = resolve_mode(mode, channels)
    size = resolve_size(size, (height, width))
    check_fits("trigger image", *trigger_hw(backdoor_path, size), (height, width))
    lut = composite_lut(backdoor_path, size, mode, blend)
    xs, ys = _positions(batch, (height, width), lut.shape[:2], random, x_shift, y_shift, seed, rng)
    levels, out = quantize_checked(x)
    _apply(nhwc_view(levels, channels_first), nhwc_view(out, channels_first), lut, xs, ys)
    return out
