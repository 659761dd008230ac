"""The trigger registry as other teams use it: every trigger on NHWC uint8/float batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poisonlab.triggers import TRIGGERS, BoundTrigger, TriggerSpec, add_pattern_bd, get_trigger

NAMES = [
    "single_pixel",
    "pattern",
    "image_insert",
    "cyan_square_add",
    "cyan_square_replace",
    "blended",
    "watermark",
    "warp",
    "sinusoid",
]
SHAPES = [(3, 8, 8, 1), (3, 8, 8, 3), (3, 13, 9, 3), (3, 28, 28, 1), (3, 32, 32, 3)]


def test_registered_names():
    assert list(TRIGGERS) == NAMES
    for name, spec in TRIGGERS.items():
        assert isinstance(spec, TriggerSpec) and spec.name == name
        assert spec.description and "\n" not in spec.description
        assert set(spec.defaults) <= set(spec.parameters)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[1:])))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_trigger_on_every_supported_batch(name, shape, dtype):
    grey = np.full(shape, 100, np.uint8)  # mid-grey, so even "add" triggers show
    if name == "warp":  # a warp only moves content: a flat image comes back unchanged
        grey = (grey.astype(np.int64) + np.arange(shape[2])[None, None, :, None] * 9).astype(np.uint8)
    x = grey if dtype == np.uint8 else grey / np.float32(255)
    before = x.copy()
    trigger = get_trigger(name)
    out = trigger(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(x, before)
    assert np.any(out != x)
    np.testing.assert_array_equal(trigger(x), out)  # deterministic with the defaults


def test_spec_is_frozen_and_defaults_read_only():
    spec = TRIGGERS["pattern"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.defaults["distance"] = 5  # type: ignore[index]


def test_overrides_are_applied():
    x = np.random.default_rng(0).integers(0, 256, (2, 10, 10, 3), dtype=np.uint8)
    bound = get_trigger("pattern", distance=3, pixel_value=0)
    assert isinstance(bound, BoundTrigger) and bound.params["distance"] == 3
    np.testing.assert_array_equal(bound(x), add_pattern_bd(x, distance=3, pixel_value=0))
    assert TRIGGERS["pattern"].defaults["distance"] == 2  # registry untouched


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"unknown trigger 'badnets'; expected one of single_pixel, pattern, "
        r"image_insert, cyan_square_add, cyan_square_replace, blended",
    ):
        get_trigger("badnets")


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(
        ValueError,
        match=r"unknown parameter\(s\) 'colour' for trigger 'cyan_square_add'; "
        r"valid parameters: size, color, mode$",
    ):
        get_trigger("cyan_square_add", colour=(1, 2, 3))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'channels_first'"):
        get_trigger("single_pixel", channels_first=True)


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("single_pixel", {"pixel_value": 255}, r"pixel_value must be in \[0, 1\], got 255"),
        ("pattern", {"distance": -1}, r"distance must be an integer >= 1, got -1"),
        ("image_insert", {"blend": 2}, r"blend must be in \[0, 1\], got 2"),
        ("image_insert", {"size": "big"}, r"size must be None, 'auto' or a \(height, width\) pair"),
        ("image_insert", {"mode": "P"}, r"mode must be one of \[None, 'L', 'RGB'\], got 'P'"),
        ("cyan_square_add", {"mode": "multiply"}, r"mode must be one of \['add', 'replace'\], got 'mult"),
        ("cyan_square_replace", {"color": "cyan"}, r"color must be a sequence of numbers in \[0, 255\]"),
        ("blended", {"alpha": -0.5}, r"alpha must be in \[0, 1\], got -0\.5"),
    ],
)
def test_bad_override_values_refused_early(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_trigger(name, **params)


def test_bound_trigger_wants_nhwc_batches():
    with pytest.raises(
        ValueError, match=r"trigger 'pattern': expected an \(N, H, W, C\) batch, got shape \(8, 8, 3\)"
    ):
        get_trigger("pattern")(np.zeros((8, 8, 3), np.uint8))


def test_image_insert_random_override_reproducible():
    x = np.zeros((20, 16, 16, 3), np.uint8)
    bound = get_trigger("image_insert", random=True, seed=4, blend=1.0)
    np.testing.assert_array_equal(bound(x), bound(x))
