"""Properties every trigger function must have: dtype kept, input untouched, ranges, layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from poisonlab.triggers import (
    add_pattern_bd,
    add_single_bd,
    blend_pattern,
    cyan_square,
    default_trigger_path,
    insert_image,
)

ALERT = default_trigger_path("alert")
FUNCTIONS = {
    "add_single_bd": lambda x, **k: add_single_bd(x, 2, 1, **k),
    "add_pattern_bd": lambda x, **k: add_pattern_bd(x, 3, 0.7, **k),
    "insert_image": lambda x, **k: insert_image(
        x, ALERT, random=False, x_shift=1, y_shift=2, size=(5, 6), mode=None, blend=0.8, **k
    ),
    "insert_image_random": lambda x, **k: insert_image(x, ALERT, size=(4, 4), mode=None, seed=3, **k),
    "cyan_square_add": lambda x, **k: cyan_square(x, mode="add", **k),
    "cyan_square_replace": lambda x, **k: cyan_square(x, mode="replace", **k),
    "blend_pattern": lambda x, **k: blend_pattern(x, alpha=0.3, **k),
}
FLOATS = [np.float16, np.float32, np.float64]


def _uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(params=list(FUNCTIONS))
def fn(request):
    return FUNCTIONS[request.param]


@pytest.mark.parametrize("dtype", [np.uint8, *FLOATS])
@pytest.mark.parametrize("shape", [(3, 10, 11, 3), (3, 10, 11, 1), (3, 10, 11), (10, 11, 3), (10, 11)])
def test_dtype_shape_range_and_no_mutation(fn, dtype, shape):
    u = _uint8(shape)
    x = u if dtype == np.uint8 else (u / 255.0).astype(dtype)
    before = x.copy()
    x.flags.writeable = False  # any write into the input would raise
    out = fn(x)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)
    if dtype != np.uint8:
        assert out.min() >= 0 and out.max() <= 1
    assert np.any(out != x)


@pytest.mark.parametrize("shape", [(4, 12, 12, 3), (4, 12, 12, 1), (12, 12)])
def test_uint8_matches_rounded_float_within_one_level(fn, shape):
    u = _uint8(shape, seed=5)
    from_float = np.rint(fn(u / 255.0) * 255).astype(np.int16)
    assert np.abs(fn(u).astype(np.int16) - from_float).max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_first_equals_channels_last(fn, channels):
    nhwc = _uint8((3, 9, 10, channels), seed=2) / 255.0
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(fn(nchw, channels_first=True).transpose(0, 2, 3, 1), fn(nhwc))
    np.testing.assert_array_equal(fn(nchw[0], channels_first=True).transpose(1, 2, 0), fn(nhwc[:1])[0])


def test_single_image_equals_batch_of_one(fn):
    x = _uint8((1, 9, 10, 3), seed=4)
    np.testing.assert_array_equal(fn(x[0]), fn(x)[0])


def test_non_contiguous_and_empty_inputs(fn):
    x = _uint8((4, 20, 22, 3), seed=6)[:, ::2, ::2]
    np.testing.assert_array_equal(fn(x), fn(np.ascontiguousarray(x)))
    empty = np.zeros((0, 10, 11, 3), np.float32)
    out = fn(empty)
    assert out.shape == empty.shape and out.dtype == empty.dtype


def test_negative_zero_is_in_range():
    x = np.full((1, 8, 8, 3), -0.0, np.float32)
    assert add_single_bd(x).max() == 1


# ---------------------------------------------------------------------------- insert_image specifics


@pytest.fixture(scope="module")
def bright_trigger(tmp_path_factory):
    """An opaque RGB trigger without black pixels, so its footprint on a black image is exact."""
    pixels = np.random.default_rng(1).integers(40, 256, (4, 5, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("trigger") / "bright.png"
    Image.fromarray(pixels).save(path)
    return path


def _footprints(out):
    """Top-left corner and size of the changed area of each image of a batch on black."""
    boxes = []
    for image in out.max(axis=-1):
        rows, cols = np.nonzero(image)
        boxes.append((cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1))
    return boxes


def test_random_positions_inside_varied_and_reproducible(bright_trigger):
    x = np.zeros((300, 12, 11, 3), np.uint8)
    out = insert_image(x, bright_trigger, random=True, mode="RGB", blend=1.0, seed=11)
    boxes = _footprints(out)
    assert all((w, h) == (5, 4) for _, _, w, h in boxes)  # the whole trigger, never cropped
    xs, ys = {b[0] for b in boxes}, {b[1] for b in boxes}
    assert xs == set(range(11 - 5 + 1)) and ys == set(range(12 - 4 + 1))  # every position reached
    again = insert_image(x, bright_trigger, random=True, mode="RGB", blend=1.0, seed=11)
    np.testing.assert_array_equal(out, again)
    with_rng = insert_image(x, bright_trigger, mode="RGB", blend=1.0, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(out, with_rng)
    other = insert_image(x, bright_trigger, mode="RGB", blend=1.0, seed=12)
    assert not np.array_equal(out, other)


def test_seeded_placement_leaves_global_rng_alone(bright_trigger):
    np.random.seed(0)
    expected = np.random.rand(3)
    np.random.seed(0)
    insert_image(np.zeros((5, 8, 8, 3)), bright_trigger, mode="RGB", seed=1)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_fixed_placement_position_and_untouched_rest(bright_trigger):
    u = _uint8((3, 12, 12, 3), seed=8)
    out = insert_image(u, bright_trigger, random=False, x_shift=6, y_shift=8, mode="RGB", blend=1.0)
    trigger = np.asarray(Image.open(bright_trigger))
    np.testing.assert_array_equal(out[:, 8:12, 6:11], np.broadcast_to(trigger, (3, 4, 5, 3)))
    mask = np.ones((12, 12), bool)
    mask[8:12, 6:11] = False
    np.testing.assert_array_equal(out[:, mask], u[:, mask])


def test_float_output_is_quantised_like_art():
    x = np.full((1, 10, 10, 1), 0.5, np.float64)  # 127.5 -> level 127, as ART truncates
    out = insert_image(x, ALERT, random=False, size=(3, 3), mode="L")
    assert out[0, -1, -1, 0] == 127 / 255.0


def test_auto_size_fits_tiny_images():
    x = _uint8((2, 8, 8, 1))
    out = insert_image(x, size="auto", mode=None, random=False, blend=1.0)
    changed = np.argwhere(out != x)
    assert changed[:, 1].max() < 3 and changed[:, 2].max() < 3  # 3x3 trigger at the top-left
