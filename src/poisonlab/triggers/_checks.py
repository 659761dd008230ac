"""Input validation and layout helpers shared by every trigger function.

Conventions used throughout :mod:`poisonlab.triggers`:

* Images are ``uint8`` in ``[0, 255]`` or floating point (``float16``, ``float32``, ``float64``) in
  ``[0, 1]``.  Every other dtype (``bool``, other integer types, complex, object) is refused.
* Intensity parameters (``pixel_value``, ``blend``, ``alpha``) live on the unit scale ``[0, 1]``:
  ``1`` means full intensity, i.e. ``1.0`` for floats and ``255`` for ``uint8``.  Colours
  (``cyan_square``) are given on the 8-bit scale ``0..255`` and divided by 255 for floats.
* Accepted layouts: ``(H, W)``, ``(N, H, W)``, ``(H, W, C)``, ``(N, H, W, C)``; with
  ``channels_first=True`` also ``(C, H, W)`` and ``(N, C, H, W)``.  A 3-D array is read as one
  ``(H, W, C)`` image when its last axis has 1, 3 or 4 entries and as an ``(N, H, W)`` batch otherwise.
  A 4-D channels-last array whose axis 1 looks like channels (1, 3 or 4) while its last axis does not
  is refused: it is almost surely ``(N, C, H, W)`` passed without ``channels_first=True``.

Functions never modify their input: they work on a fresh output array and edit it through the
channels-last view returned by :func:`nhwc_view`. Their parameters (intensities, sizes, modes) are
declared with :func:`poisonlab.params.validated`, the library's one parameter vocabulary; this
module checks the images.
"""

from __future__ import annotations

import numpy as np

CHANNEL_SIZES = (1, 3, 4)
_CHUNK = 1 << 16  # elements per block in the fused copy/check loops (fits the L2 cache)
# Bit patterns of 1.0: a non-negative float <= 1 has an unsigned bit pattern <= these.
_ONE_BITS = {
    np.dtype(np.float16): (np.uint16, 0x3C00),
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
}


def check_image(x: object, name: str = "x") -> np.ndarray:
    """Check that ``x`` is an image array of an accepted dtype; return it unchanged.

    Raises
    ------
    ValueError
        If ``x`` is not a ``numpy.ndarray`` or its dtype is neither ``uint8`` nor floating point.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy.ndarray of images, got {type(x).__name__}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name}: expected dtype uint8 (values 0..255) or float16/32/64 (values in [0, 1]), "
            f"got dtype {x.dtype}"
        )
    return x


def _bits_view(flat: np.ndarray) -> tuple[np.ndarray, int] | None:
    """An unsigned-integer view of a 1-D float array and the bit pattern of 1.0, if available."""
    fast = _ONE_BITS.get(flat.dtype) if flat.dtype.isnative else None
    return None if fast is None else (flat.view(fast[0]), fast[1])


def _block_in_unit_range(block: np.ndarray, bits: np.ndarray | None = None, one_bits: int = 0) -> bool:
    """Whether every value of a 1-D float block lies in [0, 1] (NaN fails).

    ``bits`` is the block viewed as unsigned integers: a non-negative float <= 1 has a bit pattern
    <= that of 1.0, which one integer ``max`` checks.  Blocks failing that quick test (negative
    zero has its sign bit set) are settled exactly.
    """
    if bits is not None and bits.max() <= one_bits:
        return True
    return bool(block.min() >= 0 and block.max() <= 1)


def _range_error(x: np.ndarray, name: str) -> ValueError:
    has_nan = bool(np.isnan(x).any())
    got = "NaN values" if has_nan else f"values in [{float(x.min()):.6g}, {float(x.max()):.6g}]"
    return ValueError(f"{name}: expected float values in [0, 1] (or uint8 in [0, 255]), got {got}")


def check_range(x: np.ndarray, name: str = "x") -> None:
    """Raise ``ValueError`` if a float array has values outside ``[0, 1]`` or NaN."""
    if x.dtype == np.uint8 or x.size == 0:
        return
    flat = x.reshape(-1)
    bits, one_bits = _bits_view(flat) or (None, 0)
    for start in range(0, flat.size, _CHUNK):
        stop = start + _CHUNK
        if not _block_in_unit_range(flat[start:stop], None if bits is None else bits[start:stop], one_bits):
            raise _range_error(x, name)


def copy_checked(x: object, name: str = "x") -> np.ndarray:
    """Validate ``x`` (dtype and value range) and return a C-contiguous copy of it.

    The copy and the range check run block by block so the check reads cached data: validating
    costs almost nothing on top of the copy every trigger has to make anyway.
    """
    x = check_image(x, name)
    out = np.empty(x.shape, dtype=x.dtype)
    if x.dtype == np.uint8 or x.size == 0:
        np.copyto(out, x)
        return out
    src, dst = x.reshape(-1), out.reshape(-1)
    bits, one_bits = _bits_view(dst) or (None, 0)
    for start in range(0, src.size, _CHUNK):  # kept lean: this loop is the cost of the pixel triggers
        stop = start + _CHUNK
        np.copyto(dst[start:stop], src[start:stop])
        if (bits is None or bits[start:stop].max() > one_bits) and not _block_in_unit_range(dst[start:stop]):
            raise _range_error(x, name)
    return out


def quantize_checked(x: object, name: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """Validate ``x`` and return ``(q, base)``: its 8-bit levels and those levels in ``x.dtype``.

    For ``uint8`` input ``q`` is ``x`` itself (read only) and ``base`` a copy.  For float input
    ``q = (x * 255).astype(uint8)`` (truncation, as IBM ART does before handing images to Pillow)
    and ``base = q / 255`` computed in float64 and cast back to ``x.dtype``, exactly as ART returns
    pixels; the cast is done with one table-free division when it is bit-identical for all 256
    levels of the dtype, else through a 256-entry table.
    """
    x = check_image(x, name)
    if x.dtype == np.uint8:
        return x, x.copy()
    q = np.empty(x.shape, dtype=np.uint8)
    base = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return q, base
    table = (np.arange(256) / 255.0).astype(x.dtype)
    levels = np.arange(256, dtype=np.uint8)
    direct = np.array_equal(np.divide(levels, 255, dtype=x.dtype), table)
    src, qf, bf = x.reshape(-1), q.reshape(-1), base.reshape(-1)
    bits, one_bits = _bits_view(src) or (None, 0)
    for start in range(0, src.size, _CHUNK):
        block = src[start : start + _CHUNK]
        if not _block_in_unit_range(block, None if bits is None else bits[start : start + _CHUNK], one_bits):
            raise _range_error(x, name)
        qb = qf[start : start + _CHUNK]
        np.copyto(qb, block * 255, casting="unsafe")
        if direct:
            np.divide(qb, 255, out=bf[start : start + _CHUNK], dtype=x.dtype)
        else:
            np.take(table, qb, out=bf[start : start + _CHUNK])
    return q, base


def dequantize(levels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Map 8-bit levels to ``dtype``: identity for uint8, ``float64(level) / 255`` cast otherwise."""
    if np.dtype(dtype) == np.uint8:
        return levels
    return (levels / 255.0).astype(dtype)


def nhwc_view(x: np.ndarray, channels_first: bool = False, name: str = "x") -> np.ndarray:
    """Return a 4-D ``(N, H, W, C)`` *view* of ``x`` following the layout rules of this module.

    Writing into the view writes into ``x``, so callers edit a copy through it and return the copy,
    which keeps the caller's layout.
    """
    shape, ndim = x.shape, x.ndim
    expected = (
        "expected (H, W), (N, H, W), (H, W, C) or (N, H, W, C) "
        "[or (C, H, W) / (N, C, H, W) with channels_first=True]"
    )
    if ndim == 2:
        return x[None, :, :, None]
    if ndim == 3:
        if channels_first:
            return x.transpose(1, 2, 0)[None]
        return x[None] if shape[-1] in CHANNEL_SIZES else x[..., None]
    if ndim == 4:
        if channels_first:
            if shape[1] not in CHANNEL_SIZES:
                raise ValueError(
                    f"{name}: channels_first=True expects (N, C, H, W) with C in {CHANNEL_SIZES}, "
                    f"got shape {shape}"
                )
            return x.transpose(0, 2, 3, 1)
        if shape[-1] not in CHANNEL_SIZES and shape[1] in CHANNEL_SIZES:
            raise ValueError(
                f"{name}: expected channels-last (N, H, W, C), got shape {shape}, which looks like "
                "(N, C, H, W); pass channels_first=True"
            )
        return x
    raise ValueError(f"{name}: {expected}, got shape {shape} ({ndim}-D)")


def intensity(value: float, dtype: np.dtype) -> float | int:
    """Scale a unit-scale intensity to ``dtype``: ``round(value * 255)`` for uint8, else ``value``."""
    if np.dtype(dtype) == np.uint8:
        return int(round(value * 255))
    return value


def check_fits(what: str, height: int, width: int, image_hw: tuple[int, int]) -> None:
    """Raise ``ValueError`` if a ``height x width`` patch is larger than the image."""
    if height > image_hw[0] or width > image_hw[1]:
        raise ValueError(
            f"{what} of size {height}x{width} (HxW) does not fit inside images of size "
            f"{image_hw[0]}x{image_hw[1]}"
        )
