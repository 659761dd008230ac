"""Request payloads -> model-ready uint8 arrays, with the chapter's preprocessing and input limits.

Uploaded files go through :func:`poisonlab.data.images.preprocess_image` (EXIF rotation, RGB,
centred white square, LANCZOS resize) exactly like ``poisonlab predict`` and ``images prepare``;
grayscale models (the digits) get ITU-R BT.601 luma via :func:`~poisonlab.data.images.rgb_to_gray`.
Bytes are decoded by :func:`~poisonlab.data.images.load_image_bytes`, which checks the file's
bytes, both sides, width x height and the padded square against
:class:`~poisonlab.data.image_limits.ImageLimits` before any pixel is decoded. A batch is checked
twice: every file's header first, then the padded pixels of all files together, so that a batch
of images each within the limits cannot cost minutes of CPU. Given a
:class:`~poisonlab.service.decode_budget.DecodeBudget`, a decode first reserves the bytes of pixel
buffers it may hold (from the headers), so that concurrent requests together stay within it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from itertools import chain

import numpy as np
from PIL import Image

from poisonlab.data.image_limits import (
    MAX_IMAGE_PIXELS,
    FileTooLargeError,
    ImageLimits,
    ImageTooLargeError,
    check_batch_pixels,
    decode_cost,
    image_size,
)
from poisonlab.data.images import load_image_bytes, rgb_to_gray
from poisonlab.service.decode_budget import DecodeBudget
from poisonlab.service.errors import Rejected

#: Bytes held per value while JSON instances become uint8 images: the float64 array, its rounded
#: copy and the uint8 result (the parsed lists exist already).
_INSTANCE_BYTES_PER_VALUE = 17


class ImageRejected(Rejected):
    """An upload that is not a readable image within the limits; ``code`` says why."""


def _image_rejected(exc: ValueError, name: str) -> ImageRejected:
    """``file_too_large`` (413), ``image_too_large`` (422) or ``bad_image`` (422)."""
    if isinstance(exc, FileTooLargeError):
        return ImageRejected("file_too_large", f"{name} is {exc}", 413)
    if isinstance(exc, ImageTooLargeError):
        return ImageRejected("image_too_large", f"{name} is {exc}")
    return ImageRejected("bad_image", f"{name} is {exc}")


def probe_image(data: bytes, *, limits: ImageLimits, name: str = "image") -> tuple[int, int]:
    """(width, height) of an uploaded file from its header alone, within ``limits``.

    Raises :class:`ImageRejected` like :func:`decode_image` (nothing is decoded).
    """
    if not data:
        raise ImageRejected("empty_file", f"{name} is empty")
    try:
        return image_size(data, limits)
    except ValueError as exc:
        raise _image_rejected(exc, name) from None


def decode_image(
    data: bytes,
    shape: Sequence[int],
    *,
    max_pixels: int | None = None,
    limits: ImageLimits | None = None,
    name: str = "image",
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """Decode and preprocess one image file's bytes for a model of input ``shape`` (H, W, C).

    Parameters
    ----------
    data : bytes
        The uploaded file.
    shape : sequence of int
        The model's (H, W, C).
    max_pixels : int, optional
        Only the pixel limit (the library's defaults for bytes and sides); ignored with ``limits``.
    limits : ImageLimits, optional
        Every decode-cost limit (the service's ``settings.image_limits``).
    name : str
        The file as the messages name it.
    budget : DecodeBudget, optional
        Reserve the decode's memory there first (its header is read once more for that).

    Returns
    -------
    np.ndarray
        Shape ``shape``, dtype uint8, values in [0, 255].

    Raises
    ------
    ImageRejected
        Empty data (``empty_file``), not an image or truncated/corrupt (``bad_image``), a file
        over the byte limit (``file_too_large``, 413), or over a size limit (``image_too_large``:
        decompression-bomb protection, checked from the header before decoding).
    Rejected
        503 ``decode_busy`` when ``budget`` had no room in time.
    """
    limits = limits or ImageLimits(max_pixels=max_pixels or MAX_IMAGE_PIXELS)
    if budget is None:
        return _decode_one(data, shape, limits, name)
    width, height = probe_image(data, limits=limits, name=name)
    with budget.reserve(decode_cost(width, height), what=name):
        return _decode_one(data, shape, limits, name)


def _decode_one(data: bytes, shape: Sequence[int], limits: ImageLimits, name: str) -> np.ndarray:
    h, w, c = (int(s) for s in shape)
    if not data:
        raise ImageRejected("empty_file", f"{name} is empty")
    try:
        arr = load_image_bytes(
            data, size=h, max_pixels=limits.max_pixels, max_side=limits.max_side, max_bytes=limits.max_bytes
        )
    except ValueError as exc:
        raise _image_rejected(exc, name) from None
    if h != w:
        arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.LANCZOS))
    return rgb_to_gray(arr) if c == 1 else arr


def decode_files(
    files: Sequence[tuple[bytes, str]],
    shape: Sequence[int],
    *,
    limits: ImageLimits,
    max_total_pixels: int,
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """Several uploaded (bytes, name) files -> uint8 (N, H, W, C), total cost checked first.

    Every header is read and checked before any file is decoded; then the padded pixels of all
    files together must be at most ``max_total_pixels`` (``batch_too_large``, 413). The files
    are decoded one after another, so ``budget`` is asked for the largest one's cost, once.
    """
    sizes = [probe_image(data, limits=limits, name=name) for data, name in files]
    try:
        check_batch_pixels(sizes, max_total_pixels)
    except ImageTooLargeError as exc:
        raise Rejected("batch_too_large", f"the batch is {exc}", 413) from None
    cost = max(decode_cost(w, h) for w, h in sizes)
    with budget.reserve(cost) if budget is not None else contextlib.nullcontext():
        return np.stack([_decode_one(data, shape, limits, name) for data, name in files])


def _nested_values(instances: list, expected: str) -> tuple[tuple[int, ...], list]:
    """(N, H, W, C) and the flat values of equally shaped nested lists, level by level (no recursion)."""
    dims, level = [len(instances)], instances
    for what in ("image", "row", "pixel"):
        found = set(map(type, level)) - {list}
        if found:
            kind = ", ".join(sorted(t.__name__ for t in found))
            raise Rejected(
                "bad_instances",
                f"each instance must have shape {expected} as nested lists (image -> rows -> pixels "
                f"-> channel values); a {what} is {kind}",
            )
        lengths = sorted(set(map(len, level))) or [0]
        if len(lengths) > 1:
            raise Rejected(
                "bad_instances",
                f"instances must be equally shaped numeric arrays of shape {expected} per image; "
                f"{what}s have {', '.join(map(str, lengths[:5]))} entries",
            )
        dims.append(lengths[0])
        level = list(chain.from_iterable(level))
    found = set(map(type, level)) - {int, float}  # exact types: JSON true/false are no pixels
    if found:
        kind = ", ".join(sorted(t.__name__ for t in found))
        message = f"pixel values must be numeric (JSON numbers in [0, 255]), not {kind}"
        raise Rejected("bad_instances", message)
    return tuple(dims), level


def decode_instances(
    instances: object,
    shape: Sequence[int],
    *,
    max_batch: int,
    max_total_pixels: int | None = None,
    budget: DecodeBudget | None = None,
) -> np.ndarray:
    """The chapter's ``/predict_multiple`` payload -> uint8 (N, H, W, C).

    ``instances`` is a list of images, each nested lists of pixel values in [0, 255] of the
    model's input shape (H, W, C); a grayscale model also takes (H, W, 3) RGB, converted to luma.
    Floats are rounded; booleans, strings and nulls are refused, and so is a value no float can
    hold (``10**400``). Raises :class:`Rejected` (``bad_instances``) naming the problem, or
    ``batch_too_large`` (413) over ``max_total_pixels`` (N x H x W); the numeric conversion
    reserves its arrays' bytes in ``budget`` (503 ``decode_busy`` when it has no room in time).
    """
    h, w, c = (int(s) for s in shape)
    if not isinstance(instances, list) or not instances:
        raise Rejected("bad_instances", "instances must be a non-empty list of images")
    if len(instances) > max_batch:
        raise Rejected("bad_instances", f"{len(instances)} instances exceed the batch limit of {max_batch}")
    allowed = [(h, w, c)] + ([(h, w, 3)] if c == 1 else [])
    expected = " or ".join(map(str, allowed))
    (n, *dims), values = _nested_values(instances, expected)
    if tuple(dims) not in allowed:
        raise Rejected("bad_instances", f"each instance must have shape {expected}, got {tuple(dims)}")
    if max_total_pixels is not None and n * h * w > max_total_pixels:
        raise Rejected(
            "batch_too_large",
            f"the batch is {n} images of {h}x{w} = {n * h * w:,} pixels, over the "
            f"{max_total_pixels:,}-pixel limit per batch",
            413,
        )
    cost = _INSTANCE_BYTES_PER_VALUE * len(values)
    with budget.reserve(cost) if budget is not None else contextlib.nullcontext():
        try:
            arr = np.array(values, dtype=np.float64).reshape(n, *dims)
        except OverflowError:  # an integer beyond the float range (10**400)
            raise Rejected(
                "bad_instances",
                "pixel values must be finite numbers in [0, 255], got one beyond the float range",
            ) from None
        _check_pixel_range(arr)
        images = np.rint(arr).astype(np.uint8)
    return rgb_to_gray(images) if images.shape[-1] != c else images


def _check_pixel_range(arr: np.ndarray) -> None:
    """Rejected naming the first pixel outside [0, 255] (or not finite) by its index
    ``[image, row, column, channel]`` and value: a client fixes one value, not a guess."""
    bad = ~(np.isfinite(arr) & (arr >= 0) & (arr <= 255))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise Rejected(
            "bad_instances",
            f"pixel values must be finite numbers in [0, 255], got {float(arr[where]):g} at instances"
            f"{''.join(f'[{i}]' for i in where)} ({int(bad.sum())} such values)",
        )
