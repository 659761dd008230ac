"""The chapter's preprocessing: RGB conversion, centred square padding, LANCZOS resize."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from poisonlab.data.images import (
    ImageTooLargeError,
    load_image_bytes,
    load_image_file,
    pad_to_square,
    preprocess_image,
    to_rgb,
)

WHITE = (255, 255, 255)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random RGB pixels that never equal pure white, shape (h, w, 3)."""
    return np.random.default_rng(seed).integers(0, 200, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("h", "w", "before", "after"),
    [
        (4, 2, 1, 1),  # tall: left 1, right 1
        (3, 1, 1, 1),
        (4, 1, 1, 2),  # odd pad: floor on the left
        (5, 2, 1, 2),
        (2, 4, 1, 1),  # wide: top 1, bottom 1
        (2, 5, 1, 2),  # odd pad: floor on top
        (1, 6, 2, 3),
    ],
)
def test_padding_is_centred_with_floor_first(h, w, before, after):
    pixels = _rgb(h, w)
    side = max(h, w)
    out = preprocess_image(Image.fromarray(pixels), size=side)  # size == square side: no resize
    assert out.shape == (side, side, 3) and out.dtype == np.uint8
    if h > w:
        np.testing.assert_array_equal(out[:, before : before + w], pixels)
        assert (out[:, :before] == 255).all() and (out[:, before + w :] == 255).all()
        assert out[:, before + w :].shape[1] == after
    else:
        np.testing.assert_array_equal(out[before : before + h], pixels)
        assert (out[:before] == 255).all() and (out[before + h :] == 255).all()
        assert out[before + h :].shape[0] == after


def test_custom_pad_colour():
    out = preprocess_image(Image.fromarray(_rgb(4, 2)), size=4, pad_color=(10, 20, 30))
    assert (out[:, 0] == (10, 20, 30)).all() and (out[:, 3] == (10, 20, 30)).all()


def test_square_of_target_size_is_identity():
    pixels = _rgb(6, 6)
    np.testing.assert_array_equal(preprocess_image(Image.fromarray(pixels), size=6), pixels)


def test_resize_is_lanczos_of_the_padded_square():
    img = Image.fromarray(_rgb(40, 25))
    expected = pad_to_square(img, WHITE).resize((32, 32), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(preprocess_image(img, size=32), np.asarray(expected))
    assert preprocess_image(img, size=7).shape == (7, 7, 3)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        preprocess_image(Image.new("RGB", (3, 3)), size=size)


@pytest.mark.parametrize("color", [(0, 0), (0, 0, 256), (-1, 0, 0), ("a", 0, 0)])
def test_bad_pad_colour(color):
    with pytest.raises(ValueError, match="pad colour"):
        preprocess_image(Image.new("RGB", (3, 3)), size=3, pad_color=color)


# ---------------------------------------------------------------- modes
def _one_pixel(img: Image.Image, pad=WHITE) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(to_rgb(img, pad))[0, 0])


def test_mode_l_and_1():
    assert _one_pixel(Image.new("L", (1, 1), 77)) == (77, 77, 77)
    assert _one_pixel(Image.new("1", (1, 1), 1)) == (255, 255, 255)


def test_mode_la_composites_on_pad_colour():
    assert _one_pixel(Image.new("LA", (1, 1), (50, 0))) == WHITE
    assert _one_pixel(Image.new("LA", (1, 1), (50, 255))) == (50, 50, 50)
    assert _one_pixel(Image.new("LA", (1, 1), (50, 0)), pad=(1, 2, 3)) == (1, 2, 3)


def test_mode_rgba_composites_on_white_not_black():
    assert _one_pixel(Image.new("RGBA", (1, 1), (10, 20, 30, 0))) == WHITE
    assert _one_pixel(Image.new("RGBA", (1, 1), (10, 20, 30, 255))) == (10, 20, 30)
    half = _one_pixel(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert all(abs(v - 127) <= 1 for v in half)


def _palette_image(transparent: bool) -> Image.Image:
    img = Image.new("P", (2, 1))
    img.putpalette([200, 10, 10, 10, 200, 10] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    if transparent:
        img.info["transparency"] = 0
    return img


def test_mode_p_with_and_without_transparency():
    plain = np.asarray(to_rgb(_palette_image(False)))
    assert plain[0].tolist() == [[200, 10, 10], [10, 200, 10]]
    clear = np.asarray(to_rgb(_palette_image(True)))
    assert clear[0].tolist() == [[255, 255, 255], [10, 200, 10]]


def test_mode_cmyk():
    img = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert _one_pixel(img) == (255, 0, 0)


def test_mode_i16_scales_16_bit_values():
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    img = Image.frombytes("I;16", (3, 1), arr.astype("<u2").tobytes())
    assert img.mode == "I;16"
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 100, 255]


def test_mode_i_with_8_bit_range_is_kept():
    img = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert img.mode == "I"
    assert np.asarray(to_rgb(img))[0, :, 1].tolist() == [0, 100, 255]


# ---------------------------------------------------------------- files
@pytest.mark.parametrize(
    ("fmt", "suffix", "tol"), [("PNG", ".png", 0), ("WEBP", ".webp", 0), ("JPEG", ".jpg", 12)]
)
def test_file_formats(tmp_path, fmt, suffix, tol):
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, :4] = (220, 30, 30)
    pixels[:, 4:] = (30, 30, 220)
    path = tmp_path / f"img{suffix}"
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95, "subsampling": 0}}.get(fmt, {})
    Image.fromarray(pixels).save(path, format=fmt, **options)
    out = load_image_file(path, size=8)
    assert np.abs(out.astype(int) - pixels).max() <= tol


def test_png_16_bit_grayscale_and_transparency_files(tmp_path):
    Image.frombytes("I;16", (2, 1), np.array([[0, 65535]], "<u2").tobytes()).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode in ("I;16", "I")
    out = load_image_file(tmp_path / "g16.png", size=2)
    assert out[0, :, 0].tolist() == [0, 255]  # 16-bit 65535 -> 255, not clipped garbage
    assert out[1].tolist() == [[255, 255, 255]] * 2  # bottom pad row
    _palette_image(True).save(tmp_path / "p.png")
    assert load_image_file(tmp_path / "p.png", size=2)[0].tolist() == [[255, 255, 255], [10, 200, 10]]


def test_jpeg_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)  # wide: red left half, blue right half
    pixels[:, :4] = (255, 0, 0)
    pixels[:, 4:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    out = load_image_file(tmp_path / "rot.jpg", size=8).astype(int)
    # displayed upright it is tall (8 x 4): red on top, blue at the bottom, white pads left/right
    assert (out[:, 0] > 240).all() and (out[:, 7] > 240).all()
    assert out[1, 3, 0] > 200 and out[1, 3, 2] < 60
    assert out[6, 3, 2] > 200 and out[6, 3, 0] < 60


def test_oversized_images_are_refused_before_decoding(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="decompression-bomb"):
        load_image_file(tmp_path / "big.png", max_pixels=399)
    assert load_image_file(tmp_path / "big.png", size=4, max_pixels=400).shape == (4, 4, 3)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_file(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read image bad.jpg"):
        load_image_file(tmp_path / "bad.jpg")


def test_rgb_to_gray_weights_and_errors():
    import numpy as np
    import pytest

    from poisonlab.data.images import rgb_to_gray

    x = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    assert rgb_to_gray(x)[..., 0].tolist() == [[76, 150, 29, 255]]
    assert rgb_to_gray(x).shape == (1, 4, 1)
    with pytest.raises(ValueError, match="uint8 RGB"):
        rgb_to_gray(x[..., :1])


def test_load_image_bytes_matches_load_image_file_and_shares_the_guard(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    np.testing.assert_array_equal(load_image_bytes(data, size=8), load_image_file(tmp_path / "x.png", size=8))
    with pytest.raises(ImageTooLargeError, match="240 pixels, over the 239-pixel limit"):
        load_image_bytes(data, size=8, max_pixels=239)
    with pytest.raises(ImageTooLargeError, match="cannot read image x.png: 12x20"):
        load_image_file(tmp_path / "x.png", max_pixels=239)
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, format="PNG")  # 16 Mpx in a few kilobytes
    with pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        load_image_bytes(buf.getvalue(), max_pixels=1_000_000)
    with pytest.raises(ValueError, match="not an image in a known format"):
        load_image_bytes(b"plain text")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image_bytes(data[:-40])
    with pytest.raises(ValueError, match="empty"):
        load_image_bytes(b"")
    with pytest.raises(ValueError, match="as bytes, got str"):
        load_image_bytes("x.png")  # type: ignore[arg-type]
