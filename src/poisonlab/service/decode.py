"""Request payloads -> model-ready uint8 arrays, with the chapter's preprocessing and input limits.

Uploaded files go through :func:`poisonlab.data.images.preprocess_image` (EXIF rotation, RGB,
centred white square, LANCZOS resize) exactly like ``poisonlab predict`` and ``images prepare``;
grayscale models (the digits) get ITU-R BT.601 luma via :func:`~poisonlab.data.images.rgb_to_gray`.
Bytes are decoded by :func:`~poisonlab.data.images.load_image_bytes`, which checks the pixel limit
from the image header before any pixel is decoded (the same guard as ``load_image_file``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from poisonlab.data.images import ImageTooLargeError, load_image_bytes, rgb_to_gray
from poisonlab.service.errors import Rejected


class ImageRejected(Rejected):
    """An upload that is not a readable image within the limits; ``code`` says why."""


def decode_image(data: bytes, shape: Sequence[int], *, max_pixels: int, name: str = "image") -> np.ndarray:
    """Decode and preprocess one image file's bytes for a model of input ``shape`` (H, W, C).

    Returns
    -------
    np.ndarray
        Shape ``shape``, dtype uint8, values in [0, 255].

    Raises
    ------
    ImageRejected
        Empty data (``empty_file``), not an image or truncated/corrupt (``bad_image``), or more
        than ``max_pixels`` pixels (``image_too_large``: decompression-bomb protection).
    """
    h, w, c = (int(s) for s in shape)
    if not data:
        raise ImageRejected("empty_file", f"{name} is empty")
    try:
        arr = load_image_bytes(data, size=h, max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        raise ImageRejected("image_too_large", f"{name} is {exc}") from None
    except ValueError as exc:
        raise ImageRejected("bad_image", f"{name} is {exc}") from None
    if h != w:
        arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.LANCZOS))
    return rgb_to_gray(arr) if c == 1 else arr


def decode_instances(instances: object, shape: Sequence[int], *, max_batch: int) -> np.ndarray:
    """The chapter's ``/predict_multiple`` payload -> uint8 (N, H, W, C).

    ``instances`` is a list of images, each nested lists of pixel values in [0, 255] of the
    model's input shape (H, W, C); a grayscale model also takes (H, W, 3) RGB, converted to luma.
    Floats are rounded. Raises :class:`Rejected` (``bad_instances``) naming the problem.
    """
    h, w, c = (int(s) for s in shape)
    if not isinstance(instances, list) or not instances:
        raise Rejected("bad_instances", "instances must be a non-empty list of images")
    if len(instances) > max_batch:
        raise Rejected("bad_instances", f"{len(instances)} instances exceed the batch limit of {max_batch}")
    try:
        arr = np.asarray(instances, dtype=np.float64)
    except (ValueError, TypeError):
        raise Rejected(
            "bad_instances",
            f"instances must be equally shaped numeric arrays of shape ({h}, {w}, {c}) per image",
        ) from None
    allowed = [(h, w, c)] + ([(h, w, 3)] if c == 1 else [])
    if arr.ndim != 4 or tuple(arr.shape[1:]) not in allowed:
        raise Rejected(
            "bad_instances",
            f"each instance must have shape {' or '.join(map(str, allowed))}, got {arr.shape[1:]}",
        )
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise Rejected("bad_instances", "pixel values must be finite numbers in [0, 255]")
    images = np.rint(arr).astype(np.uint8)
    return rgb_to_gray(images) if images.shape[-1] != c else images
