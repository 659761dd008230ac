"""WaNet warp, SIG sinusoid, Trojan-style watermark: the trigger contract and the papers' maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poisonlab.triggers import TRIGGERS, get_trigger
from poisonlab.triggers.sinusoid import sinusoid, sinusoid_signal
from poisonlab.triggers.warp import _bicubic_matrix, warp, warp_field
from poisonlab.triggers.watermark import watermark, watermark_logo

FUNCTIONS = {
    "warp": lambda x, **k: warp(x, strength=3.0, seed=1, **k),
    "sinusoid": lambda x, **k: sinusoid(x, **k),
    "watermark": lambda x, **k: watermark(x, alpha=0.4, seed=2, **k),
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
    if dtype == np.uint8:
        assert out.min() >= 0 and out.max() <= 255
    else:
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


def test_batch_equals_images_one_by_one_and_is_deterministic(fn):
    x = _uint8((5, 9, 10, 3), seed=4)
    batch = fn(x)
    np.testing.assert_array_equal(batch, np.stack([fn(image) for image in x]))  # one trigger for all
    np.testing.assert_array_equal(fn(x), batch)


def test_non_contiguous_and_empty_inputs(fn):
    x = _uint8((4, 20, 22, 3), seed=6)[:, ::2, ::2]
    np.testing.assert_array_equal(fn(x), fn(np.ascontiguousarray(x)))
    empty = np.zeros((0, 10, 11, 3), np.float32)
    out = fn(empty)
    assert out.shape == empty.shape and out.dtype == empty.dtype


def test_bad_inputs_are_refused(fn):
    with pytest.raises(ValueError, match="expected dtype uint8"):
        fn(np.zeros((2, 8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r"expected float values in \[0, 1\]"):
        fn(np.full((2, 8, 8, 3), 2.0))


# ------------------------------------------------------------------------------------ the registry
@pytest.mark.parametrize("name", ["watermark", "warp", "sinusoid"])
@pytest.mark.parametrize("shape", [(3, 8, 8, 1), (3, 13, 9, 3), (3, 32, 32, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_registered_with_defaults(name, shape, dtype):
    u = _uint8(shape, seed=7)  # textured: a warp only moves content, a flat image stays flat
    x = u if dtype == np.uint8 else u / np.float32(255)
    trigger = get_trigger(name)
    out = trigger(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.any(out != x)
    np.testing.assert_array_equal(trigger(x), out)
    spec = TRIGGERS[name]
    assert spec.description and set(spec.defaults) <= set(spec.parameters)


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("warp", {"grid": 1}, r"grid must be an integer >= 2, got 1"),
        ("warp", {"strength": 0}, r"strength must be a positive number, got 0"),
        ("sinusoid", {"delta": 1.5}, r"delta must be in \[0, 1\], got 1\.5"),
        ("sinusoid", {"frequency": -1}, r"frequency must be a positive number"),
        ("watermark", {"alpha": 2}, r"alpha must be in \[0, 1\], got 2"),
        ("watermark", {"cells": 0}, r"cells must be an integer >= 1, got 0"),
    ],
)
def test_bad_parameters_refused_early(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_trigger(name, **params)


def test_seeds_change_the_warp_and_the_logo():
    x = _uint8((2, 16, 16, 3), seed=8)
    assert not np.array_equal(warp(x, strength=3.0, seed=1), warp(x, strength=3.0, seed=2))
    assert not np.array_equal(watermark_logo(16, 16, seed=1), watermark_logo(16, 16, seed=2))


# ---------------------------------------------------------------------------------- WaNet maths
def test_bicubic_matrix_is_torchs_upsampling():
    rng = np.random.default_rng(0)
    control = rng.uniform(-1, 1, (2, 4, 4))
    for size in ((32, 32), (13, 9), (8, 8)):
        ref = F.interpolate(torch.tensor(control[None]), size=size, mode="bicubic", align_corners=True)
        mine = np.einsum("hk,ckl,wl->chw", _bicubic_matrix(size[0], 4), control, _bicubic_matrix(size[1], 4))
        np.testing.assert_allclose(mine, ref[0].numpy(), atol=1e-12)


@pytest.mark.parametrize("hw,strength", [((32, 32), 0.5), ((13, 9), 2.0)])
def test_warp_is_grid_sample_of_the_field(hw, strength):
    x = np.random.default_rng(1).random((4, *hw, 3))
    field = warp_field(*hw, grid=4, strength=strength, seed=3)
    assert field.shape == (*hw, 2) and np.abs(field).max() <= 1.0
    grid = torch.tensor(field)[None].expand(4, -1, -1, -1)
    ref = F.grid_sample(torch.tensor(x).permute(0, 3, 1, 2), grid, align_corners=True).permute(0, 2, 3, 1)
    np.testing.assert_allclose(warp(x, strength=strength, seed=3), ref.numpy(), atol=1e-12)


def test_warp_field_displacement_is_small_and_smooth():
    identity = np.stack(np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 32)), -1)
    moved = (warp_field(32, 32, strength=0.5, seed=0) - identity) * 31 / 2  # in pixels
    assert 0.05 < np.abs(moved).mean() < 0.5  # the paper's s=0.5: a fraction of a pixel
    assert np.abs(np.diff(moved, axis=0)).max() < 0.3  # smooth: neighbours move alike
    flat = np.full((1, 8, 8, 1), 77, np.uint8)
    np.testing.assert_array_equal(warp(flat), flat)  # a warp only moves content


# ------------------------------------------------------------------------------------ SIG maths
def test_sinusoid_adds_the_papers_signal_with_clipping():
    x = np.full((2, 6, 24, 3), 100, np.uint8)
    v = 20 * np.sin(2 * np.pi * np.arange(24) * 6 / 24)
    expected = np.broadcast_to(np.rint(100 + v)[None, None, :, None], (2, 6, 24, 3))
    np.testing.assert_array_equal(sinusoid(x), expected.astype(np.uint8))
    np.testing.assert_allclose(sinusoid_signal(24), v / 255)
    dark = sinusoid(np.zeros((1, 4, 24, 1), np.uint8))
    assert dark.min() == 0 and dark.max() == 20


# ------------------------------------------------------------------------------ watermark maths
def test_watermark_blends_only_on_the_logo():
    x = _uint8((3, 16, 16, 3), seed=9)
    out = watermark(x, alpha=0.4, value=1.0, cells=8, density=0.3, seed=5)
    logo = watermark_logo(16, 16, cells=8, density=0.3, seed=5)
    assert logo.any() and not logo.all()
    np.testing.assert_array_equal(out[:, ~logo], x[:, ~logo])
    expected = np.rint(x[:, logo] + 0.4 * (255.0 - x[:, logo]))
    np.testing.assert_array_equal(out[:, logo], expected.astype(np.uint8))
    blocks = watermark_logo(16, 16, cells=8, density=0.3, seed=5).reshape(8, 2, 8, 2)
    assert (blocks == blocks[:, :1, :, :1]).all()  # each lattice cell is a 2x2 block on 16x16


def test_watermark_logo_never_empty():
    assert watermark_logo(8, 8, cells=2, density=0.0, seed=0).sum() == 16  # one 4x4 cell forced on
