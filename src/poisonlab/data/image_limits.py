"""What decoding an image file may cost, bounded before any pixel is decoded.

The chapter's preprocessing (:func:`poisonlab.data.images.preprocess_image`) converts an image to
RGB and pads it to a square of its long side before resizing. Its memory and time therefore grow
with the padded square, not with width x height: a 39 KB 2000x20000 PNG has 40 Mpx, within a
40 Mpx limit, but becomes a 20000x20000 RGB square of 1.2 GB. :class:`ImageLimits` bounds the
file's bytes, each side, width x height and the padded square. All of these are known before
decoding, from the file's size and from the image header, which Pillow reads in ``Image.open``
(the pixels are decoded only by ``load()``): :func:`open_checked` checks them there.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MiB = 1 << 20
MAX_IMAGE_BYTES = 64 * MiB
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 8192
#: Pillow plugins tried on open: the formats of ``IMAGE_EXTENSIONS`` (the JPEG plugin also opens
#: cameras' multi-picture JPEGs). Rarer decoders (EPS runs Ghostscript) are never reached.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class ImageTooLargeError(ValueError):
    """An image over a decode-cost limit, refused before its pixels were decoded."""


class FileTooLargeError(ImageTooLargeError):
    """An image file over the byte limit, refused before it was opened."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def padded_pixels(width: int, height: int) -> int:
    """Pixels of the square the preprocessing pads a ``width`` x ``height`` image to."""
    side = max(width, height)
    return side * side


#: Bytes of pixel buffers the preprocessing may hold at once, per pixel of the padded square (Pillow
#: keeps RGB at 4 bytes a pixel) and per pixel of the file (the decoded original, its EXIF-rotated
#: and RGB copies, alpha compositing). Upper bounds of the peak resident memory measured while
#: decoding PNGs with Pillow 13 (4096x4096: RGBA 274 MiB, RGB 130 MiB, L 98 MiB; 400x4096 RGBA
#: 78 MiB), so that :func:`decode_cost` never underestimates: 320 MiB and 93 MiB for those sizes.
SQUARE_BYTES_PER_PIXEL = 4
SOURCE_BYTES_PER_PIXEL = 16


def decode_cost(width: int, height: int) -> int:
    """Bytes of pixel buffers decoding and preprocessing a ``width`` x ``height`` image may hold at once.

    An upper bound (see :data:`SOURCE_BYTES_PER_PIXEL`), known from the header before decoding:
    what a process-wide decode budget reserves (:mod:`poisonlab.service.decode_budget`).
    """
    return SQUARE_BYTES_PER_PIXEL * padded_pixels(width, height) + SOURCE_BYTES_PER_PIXEL * width * height


@dataclass(frozen=True)
class ImageLimits:
    """Decode-cost limits of one image file.

    Parameters
    ----------
    max_bytes : int
        Largest file, in bytes.
    max_pixels : int
        Largest width x height, and largest padded square (side = the longer dimension); the
        square bounds both sides by ``isqrt(max_pixels)`` too.
    max_side : int
        Largest width and largest height.
    """

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    max_side: int = MAX_IMAGE_SIDE

    def __post_init__(self) -> None:
        for f in fields(self):
            _positive_int(f"ImageLimits.{f.name}", getattr(self, f.name))

    def check_bytes(self, size: int) -> None:
        """FileTooLargeError (an ImageTooLargeError) when ``size`` bytes are over ``max_bytes``."""
        if size > self.max_bytes:
            raise FileTooLargeError(f"{size:,} bytes, over the {self.max_bytes:,}-byte limit per image")

    def check_size(self, width: int, height: int) -> int:
        """The padded square's pixels of a ``width`` x ``height`` image, or ImageTooLargeError.

        Messages name the size found and the limit it breaks (decompression-bomb protection).
        """
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"{width}x{height} = {width * height:,} pixels, over the {self.max_pixels:,}-pixel "
                "limit (decompression-bomb protection)"
            )
        if max(width, height) > self.max_side:
            raise ImageTooLargeError(
                f"{width}x{height}, a side of {max(width, height):,} pixels, over the "
                f"{self.max_side:,}-pixel limit per side (decompression-bomb protection)"
            )
        side, padded = max(width, height), padded_pixels(width, height)
        if padded > self.max_pixels:
            raise ImageTooLargeError(
                f"{width}x{height}, padded to a {side}x{side} square of {padded:,} pixels, over the "
                f"{self.max_pixels:,}-pixel limit (decompression-bomb protection)"
            )
        return padded


def check_batch_pixels(sizes: Iterable[tuple[int, int]], max_total: int) -> int:
    """Total padded pixels of images of ``sizes`` (width, height); ImageTooLargeError over ``max_total``.

    Each image may be within its own limits while a batch of them costs minutes of CPU.
    """
    sizes = list(sizes)
    total = sum(padded_pixels(w, h) for w, h in sizes)
    if total > max_total:
        raise ImageTooLargeError(
            f"{len(sizes)} images padding to {total:,} pixels in all, over the {max_total:,}-pixel "
            "limit per batch"
        )
    return total


def _pillow_limit(width: int, height: int) -> None:
    # Pillow's own decompression-bomb threshold, checked here rather than by turning its warning
    # into an error: warnings.catch_warnings changes process-wide state, unsafe in threads.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"{width}x{height} = {width * height:,} pixels, over Pillow's decompression-bomb limit "
            f"of {limit:,}"
        )


@contextlib.contextmanager
def open_checked(
    source: bytes | str | os.PathLike[str], limits: ImageLimits | None = None
) -> Iterator[Image.Image]:
    """Open an image file (its bytes or its path) whose pixels are not decoded yet, within ``limits``.

    The file size is checked before opening, the header's size right after; the caller decodes
    (``load()``) inside the ``with`` block. Errors there are translated too: ImageTooLargeError
    (a ValueError) over a limit, ValueError for anything unreadable, with messages that read as
    predicates ("not an image in a known format ...") so that callers can prefix a name.
    """
    limits = limits or ImageLimits()
    if isinstance(source, bytes | bytearray | memoryview):
        limits.check_bytes(len(source))
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        fp = Path(source)
        limits.check_bytes(fp.stat().st_size)
    try:
        with Image.open(fp, formats=IMAGE_FORMATS) as img:
            limits.check_size(*img.size)
            _pillow_limit(*img.size)
            yield img
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"over Pillow's decompression-bomb limit ({exc})") from exc
    except UnidentifiedImageError as exc:
        known = ", ".join(IMAGE_FORMATS)
        raise ValueError(f"not an image in a known format (expected one of {known})") from exc
    except Exception as exc:  # Pillow decoders raise many types on corrupt input
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from exc


def image_size(data: bytes, limits: ImageLimits | None = None) -> tuple[int, int]:
    """(width, height) of an image file's bytes, from its header alone, after the checks of ``limits``."""
    with open_checked(data, limits) as img:
        return img.size
