"""Outputs of poisonlab.triggers against IBM ART 1.20.1 (the reference), and where we differ on purpose.

Random placement: with ``seed=None, rng=None`` our ``insert_image`` draws its positions from numpy's
global RNG in ART's order (x, then y, image after image), so both functions are called with the
global RNG seeded identically and must agree exactly, including the RNG state they leave behind.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "art", reason="IBM ART 1.20.1 is the test-only reference (pip install -r requirements-dev.txt)"
)
from art.attacks.poisoning import perturbations as art_p  # noqa: E402

from poisonlab.triggers import add_pattern_bd, add_single_bd, default_trigger_path, insert_image  # noqa: E402

pytestmark = pytest.mark.needs_art

ALERT = default_trigger_path("alert")
HTBD = default_trigger_path("htbd")


def _images(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).random(shape).astype(dtype)


@pytest.fixture(scope="module")
def alpha_trigger(tmp_path_factory):
    """An RGBA trigger with random colours and alpha, fully transparent and opaque rows."""
    pixels = np.random.default_rng(7).integers(0, 256, (9, 7, 4), dtype=np.uint8)
    pixels[0, :, 3], pixels[1, :, 3] = 0, 255
    path = tmp_path_factory.mktemp("trigger") / "alpha.png"
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------------------- pixel and pattern

PIXEL_SHAPES = {"NHWC": (3, 10, 12, 3), "NHWC1": (2, 9, 9, 1), "NHW": (3, 10, 12), "HW": (10, 12)}


@pytest.mark.parametrize("fn_name", ["add_single_bd", "add_pattern_bd"])
@pytest.mark.parametrize("layout", PIXEL_SHAPES)
@pytest.mark.parametrize("distance", [1, 2, 4])
@pytest.mark.parametrize("pixel_value", [0, 0.5, 1])
def test_pixel_triggers_equal_art(fn_name, layout, distance, pixel_value):
    x = _images(PIXEL_SHAPES[layout])
    ours = {"add_single_bd": add_single_bd, "add_pattern_bd": add_pattern_bd}[fn_name]
    expected = getattr(art_p, fn_name)(x, distance, pixel_value)
    result = ours(x, distance, pixel_value)
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_pixel_triggers_equal_art_other_floats(dtype):
    x = _images((2, 8, 8, 3), dtype)
    np.testing.assert_array_equal(add_single_bd(x, 3, 0.25), art_p.add_single_bd(x, 3, 0.25))
    np.testing.assert_array_equal(add_pattern_bd(x, 3, 0.25), art_p.add_pattern_bd(x, 3, 0.25))


def test_pattern_nchw_channels_first_equals_art():
    x = _images((3, 3, 10, 11))
    np.testing.assert_array_equal(
        add_pattern_bd(x, 2, 1, channels_first=True), art_p.add_pattern_bd(x, 2, 1, channels_first=True)
    )
    chw = x[0]  # ART reads 3-D as (N, H, W) even with channels_first: same pixels as (C, H, W)
    np.testing.assert_array_equal(
        add_pattern_bd(chw, 3, 1, channels_first=True), art_p.add_pattern_bd(chw, 3, 1, channels_first=True)
    )


def test_single_nchw_channels_first_equals_art_on_nhwc():
    x = _images((3, 3, 10, 11))  # ART's add_single_bd has no channels_first: compare via NHWC
    expected = art_p.add_single_bd(x.transpose(0, 2, 3, 1), 2, 1).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(add_single_bd(x, 2, 1, channels_first=True), expected)


@pytest.mark.parametrize("fn_name", ["add_single_bd", "add_pattern_bd"])
def test_single_hwc_image_equals_art_on_batch_of_one(fn_name):
    x = _images((10, 12, 3))
    ours = {"add_single_bd": add_single_bd, "add_pattern_bd": add_pattern_bd}[fn_name]
    np.testing.assert_array_equal(ours(x, 2, 1), getattr(art_p, fn_name)(x[None], 2, 1)[0])


# ---------------------------------------------------------------------------- insert_image

INSERT_LAYOUTS = {  # name: (shape, channels_first, mode)
    "NHWC-RGB": ((3, 16, 17, 3), False, "RGB"),
    "HWC-RGB": ((16, 17, 3), False, "RGB"),
    "NHWC-L": ((3, 16, 17, 1), False, "L"),
    "HWC-L": ((16, 17, 1), False, "L"),
    "NCHW-RGB": ((2, 3, 16, 17), True, "RGB"),
    "CHW-L": ((1, 16, 17), True, "L"),
}


@pytest.mark.parametrize("layout", INSERT_LAYOUTS)
@pytest.mark.parametrize("size", [(8, 8), (5, 9), (16, 17)])
@pytest.mark.parametrize("blend", [0.0, 0.35, 0.8, 1.0])
def test_insert_image_fixed_equals_art(layout, size, blend):
    shape, channels_first, mode = INSERT_LAYOUTS[layout]
    x = _images(shape, seed=sum(size))
    shift = (0, 0) if size == (16, 17) else (3, 1)
    kwargs = dict(
        channels_first=channels_first,
        random=False,
        x_shift=shift[0],
        y_shift=shift[1],
        size=size,
        mode=mode,
        blend=blend,
    )
    expected = art_p.insert_image(x, str(ALERT), **kwargs)
    result = insert_image(x, ALERT, **kwargs)
    assert result.dtype == expected.dtype and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("which", ["alpha", "htbd-native", "alert-native"])
def test_insert_image_triggers_and_dtypes_equal_art(alpha_trigger, mode, channels, dtype, which):
    path, size, hw = {
        "alpha": (alpha_trigger, None, (12, 10)),
        "htbd-native": (HTBD, None, (35, 33)),
        "alert-native": (ALERT, None, (64, 64)),
    }[which]
    x = _images((2, *hw, channels), dtype, seed=3)
    kwargs = dict(random=False, x_shift=1, y_shift=2, size=size, mode=mode, blend=0.6)
    if which == "alert-native":
        kwargs.update(x_shift=0, y_shift=0)
    expected = art_p.insert_image(x, str(path), **kwargs)
    np.testing.assert_array_equal(insert_image(x, path, **kwargs), expected)


def test_insert_image_extreme_values_equal_art():
    x = np.zeros((4, 12, 12, 3), np.float32)
    x[1], x[2, ::2], x[3] = 1.0, 1.0, np.arange(12 * 12 * 3).reshape(12, 12, 3) / (12 * 12 * 3 - 1)
    kwargs = dict(random=False, x_shift=2, y_shift=2, size=(8, 8), mode="RGB", blend=0.8)
    np.testing.assert_array_equal(
        insert_image(x, ALERT, **kwargs), art_p.insert_image(x, str(ALERT), **kwargs)
    )


@pytest.mark.parametrize("seed", [0, 1, 2024])
@pytest.mark.parametrize("layout", ["NHWC-RGB", "HWC-L", "NCHW-RGB"])
def test_insert_image_random_equals_art_with_same_global_seed(seed, layout):
    shape, channels_first, mode = INSERT_LAYOUTS[layout]
    x = _images(shape, seed=seed)
    kwargs = dict(channels_first=channels_first, random=True, size=(5, 7), mode=mode, blend=0.8)
    np.random.seed(seed)
    expected = art_p.insert_image(x, str(ALERT), **kwargs)
    state_after_art = np.random.randint(1 << 30, size=4)
    np.random.seed(seed)
    result = insert_image(x, ALERT, **kwargs)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(np.random.randint(1 << 30, size=4), state_after_art)


# ---------------------------------------------------------------------------- divergences from ART


def test_uint8_insert_image_correct_where_art_is_not():
    u = np.random.default_rng(1).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    kwargs = dict(random=False, x_shift=2, y_shift=3, size=(6, 6), mode="RGB", blend=0.8)
    art_u8 = art_p.insert_image(u, str(ALERT), **kwargs)
    assert art_u8.max() <= 1  # ART: (u * 255) wraps in uint8, then /255 and cast: garbage
    via_float = art_p.insert_image(u / 255.0, str(ALERT), **kwargs)
    np.testing.assert_array_equal(insert_image(u, ALERT, **kwargs), np.rint(via_float * 255).astype(np.uint8))


@pytest.mark.parametrize("fn", [add_single_bd, add_pattern_bd], ids=lambda f: f.__name__)
def test_uint8_pixel_value_scaled_where_art_writes_raw(fn):
    u = np.zeros((2, 8, 8, 3), np.uint8)
    art_fn = getattr(art_p, fn.__name__)
    assert art_fn(u, 2, 1).max() == 1  # ART writes the unit-scale value as is
    ours = fn(u, 2, 1)
    assert ours.max() == 255
    np.testing.assert_array_equal(ours, art_fn(u, 2, 255))


def test_nchw_without_channels_first_refused_where_art_corrupts():
    x = _images((2, 3, 16, 16))
    art_out = art_p.add_single_bd(x, 2, 1)  # ART marks x[:, 1, 14, :]: a whole row of channel 1
    assert np.count_nonzero(art_out != x) > 0 and np.all(art_out[:, 1, 14, :] == 1)
    for fn in (add_single_bd, add_pattern_bd):
        with pytest.raises(ValueError, match=r"looks like \(N, C, H, W\); pass channels_first=True"):
            fn(x)


def test_hwc_image_marked_at_the_right_pixel_where_art_is_not():
    x = np.zeros((10, 12, 3), np.float32)
    art_out = art_p.add_single_bd(x, 2, 1)  # ART reads (10, 12, 3) as (N, H, W): column 1
    assert np.all(art_out[:, 10, 1] == 1)
    ours = add_single_bd(x, 2, 1)
    assert np.argwhere(ours == 1).tolist() == [[8, 10, c] for c in range(3)]


def test_shift_past_border_refused_where_art_crops():
    x = _images((12, 12, 3))
    kwargs = dict(random=False, x_shift=8, y_shift=0, size=(6, 6), mode="RGB")
    art_p.insert_image(x, str(ALERT), **kwargs)  # ART silently crops the trigger
    with pytest.raises(ValueError, match=r"does not fit inside 12x12 images; expected x_shift <= 6"):
        insert_image(x, ALERT, **kwargs)


def test_distance_wrapping_refused_where_art_wraps():
    x = np.zeros((8, 8), np.float32)
    art_out = art_p.add_pattern_bd(x, 7, 1)  # rows 8-7-2 = -1: wraps to the last row
    assert art_out[-1].any()
    with pytest.raises(ValueError, match=r"expected 1 <= distance <= 6 .* got 7"):
        add_pattern_bd(x, 7, 1)


def test_nhw_batch_accepted_by_insert_image_where_art_fails():
    x = _images((3, 28, 28))
    with pytest.raises(Exception):  # noqa: B017 - ART reads it as one 28-channel image
        art_p.insert_image(x, str(ALERT), random=False, size=(7, 7), mode="L")
    expected = art_p.insert_image(x[..., None], str(ALERT), random=False, size=(7, 7), mode="L")[..., 0]
    np.testing.assert_array_equal(insert_image(x, ALERT, random=False, size=(7, 7), mode="L"), expected)
