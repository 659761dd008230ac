"""Decode cost bounded before any pixel is decoded: bytes, each side, width x height and the square
the preprocessing pads to, checked from the file size and the header (Pillow's ``load`` never runs)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from poisonlab.data import preprocess
from poisonlab.data.image_limits import (
    FileTooLargeError,
    ImageLimits,
    ImageTooLargeError,
    check_batch_pixels,
    image_size,
    padded_pixels,
)
from poisonlab.data.images import load_image_bytes, load_image_file, to_rgb


def test_the_thin_png_of_the_audit_is_refused_from_its_header(decodes, png_of_size):
    thin = png_of_size((2000, 20000))  # 40 Mpx, within the default pixel limit; padded: 400 Mpx
    assert len(thin) < 60_000
    with pytest.raises(ImageTooLargeError, match="2000x20000, a side of 20,000 pixels, over the 8,192-pixel"):
        load_image_bytes(thin)
    # with the side limit lifted, the padded square is what refuses it
    with pytest.raises(ImageTooLargeError, match="padded to a 20000x20000 square of 400,000,000 pixels"):
        load_image_bytes(thin, max_side=20_000)
    assert decodes == []


def test_each_limit_names_what_it_expected_and_what_it_got():
    limits = ImageLimits(max_bytes=1000, max_pixels=1000, max_side=100)
    assert limits.check_size(10, 30) == 900  # padded square 30x30
    with pytest.raises(ImageTooLargeError, match=r"40x30 = 1,200 pixels, over the 1,000-pixel limit"):
        limits.check_size(40, 30)
    with pytest.raises(ImageTooLargeError, match="a side of 101 pixels, over the 100-pixel limit per side"):
        limits.check_size(101, 1)
    with pytest.raises(ImageTooLargeError, match="10x90, padded to a 90x90 square of 8,100 pixels, over"):
        limits.check_size(10, 90)
    with pytest.raises(FileTooLargeError, match="1,001 bytes, over the 1,000-byte limit per image"):
        limits.check_bytes(1001)
    limits.check_bytes(1000)


@pytest.mark.parametrize("field", ["max_bytes", "max_pixels", "max_side"])
@pytest.mark.parametrize("value", [0, -1, True, 2.5, "9"])
def test_limits_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=f"ImageLimits.{field} must be a positive integer"):
        ImageLimits(**{field: value})


def test_byte_limit_comes_before_opening(tmp_path, decodes):
    buf = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="PNG")  # incompressible: about 800 bytes
    data = buf.getvalue()
    assert len(data) > 100
    with pytest.raises(FileTooLargeError, match=f"{len(data):,} bytes, over the 100-byte limit"):
        load_image_bytes(data, max_bytes=100)
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(FileTooLargeError, match="cannot read image x.png: .* bytes, over the 100-byte"):
        load_image_file(tmp_path / "x.png", max_bytes=100)
    assert decodes == []
    assert load_image_file(tmp_path / "x.png", size=4, max_bytes=len(data)).shape == (4, 4, 3)


def test_image_size_reads_the_header_only(decodes, png_of_size):
    assert image_size(png_of_size((300, 7))) == (300, 7)
    with pytest.raises(ImageTooLargeError, match="padded to a 300x300 square"):
        image_size(png_of_size((300, 7)), ImageLimits(max_pixels=10_000))
    with pytest.raises(ValueError, match="not an image in a known format"):
        image_size(b"GIF89a but not really")
    assert decodes == []


def test_formats_outside_the_allowlist_are_not_opened():
    for fmt in ("PPM", "TGA", "PCX"):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, format=fmt)
        with pytest.raises(ValueError, match=r"not an image in a known format \(expected one of PNG, JPEG"):
            load_image_bytes(buf.getvalue())


def test_batch_total_counts_padded_squares():
    assert padded_pixels(10, 30) == 900
    assert check_batch_pixels([(10, 30), (5, 5)], 925) == 925
    with pytest.raises(ImageTooLargeError, match="2 images padding to 925 pixels in all, over the 924-pixel"):
        check_batch_pixels([(10, 30), (5, 5)], 924)


def test_pillow_limit_without_touching_the_warning_filters(monkeypatch, png_of_size):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True), pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        load_image_bytes(png_of_size((40, 30)), max_pixels=10_000)
    assert warnings.filters == filters


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_conversion_in_blocks_matches_the_whole_array_formula(monkeypatch, mode):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(7, 5)).astype(np.float64)
    values[0, :3] = [0, 128.5 * 257, 65535]
    if mode == "F":
        values[1, :2] = [-3.5, 1e9]
    img = Image.fromarray(values.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    assert img.mode == mode
    arr = np.asarray(img).astype(np.float64)  # the former whole-image formula
    expected = np.rint(np.clip(np.clip(arr, 0, 65535) / 257.0, 0, 255)).astype(np.uint8)
    monkeypatch.setattr(preprocess, "_DEPTH_BLOCK", 4)  # many blocks, one partial
    out = np.asarray(to_rgb(img))
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_high_depth_values_up_to_255_are_not_scaled(monkeypatch):
    img = Image.fromarray(np.array([[0, 7, 255], [3, 128, 200]], np.int32))
    monkeypatch.setattr(preprocess, "_DEPTH_BLOCK", 2)
    assert np.asarray(to_rgb(img))[..., 1].tolist() == [[0, 7, 255], [3, 128, 200]]
