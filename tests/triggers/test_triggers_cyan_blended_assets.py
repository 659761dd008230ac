"""Cyan square, blended key and the shipped trigger images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poisonlab.triggers import blend_pattern, cyan_square, default_trigger_path
from poisonlab.triggers.assets import draw_alert, draw_htbd, regenerate

# ---------------------------------------------------------------------------- cyan square


def test_add_on_white_leaves_white():  # the chapter's saturation problem
    white = np.full((2, 10, 10, 3), 255, np.uint8)
    np.testing.assert_array_equal(cyan_square(white, mode="add"), white)
    np.testing.assert_array_equal(cyan_square(white / 255.0, mode="add"), white / 255.0)


def test_add_on_grey_only_red_keeps_the_image():
    grey = np.full((1, 10, 10, 3), 100, np.uint8)
    out = cyan_square(grey, mode="add")
    assert out[0, :5, :5].tolist() == [[[100, 255, 255]] * 5] * 5
    np.testing.assert_array_equal(out[0, 5:], grey[0, 5:])
    np.testing.assert_array_equal(out[0, :, 5:], grey[0, :, 5:])


def test_replace_makes_exactly_cyan():
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = cyan_square(x, mode="replace")
    assert np.all(out[:, :5, :5] == np.array([0, 255, 255], np.uint8))
    np.testing.assert_array_equal(
        cyan_square(x / 255.0, mode="replace")[:, :5, :5], np.broadcast_to([0.0, 1.0, 1.0], (3, 5, 5, 3))
    )
    changed = np.zeros((8, 8), bool)
    changed[:5, :5] = True
    np.testing.assert_array_equal(out[:, ~changed], x[:, ~changed])


def test_one_channel_uses_grey_value_of_the_colour():
    out = cyan_square(np.zeros((1, 8, 8, 1), np.uint8), mode="replace")
    assert np.all(out[0, :5, :5, 0] == 179)  # 0.587 * 255 + 0.114 * 255 = 178.755
    outf = cyan_square(np.zeros((8, 8), np.float64), mode="replace", size=2)
    np.testing.assert_allclose(outf[:2, :2], 178.755 / 255)


def test_custom_size_and_colour():
    out = cyan_square(np.zeros((1, 6, 6, 3), np.float32), size=6, color=(255, 0, 0), mode="add")
    assert np.all(out == np.array([1, 0, 0], np.float32))


# ---------------------------------------------------------------------------- blended key


def test_blend_formula_float64():
    x = np.random.default_rng(1).random((2, 6, 7, 3))
    key = np.random.default_rng(2).random((6, 7, 3))
    np.testing.assert_allclose(blend_pattern(x, key, alpha=0.2), 0.8 * x + 0.2 * key, rtol=0, atol=1e-12)


def test_noise_key_is_seeded_and_shared_by_the_batch():
    x = np.zeros((3, 5, 5, 3), np.float32)
    out = blend_pattern(x, alpha=1.0, seed=9)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[0], np.random.default_rng(9).random((5, 5, 3)), atol=1e-7)
    assert not np.array_equal(out, blend_pattern(x, alpha=1.0, seed=10))


def test_alpha_zero_is_identity_and_uint8_rounds():
    u = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(blend_pattern(u, alpha=0.0), u)
    key = np.full((8, 8), 255, np.uint8)  # 2-D key broadcast over channels
    expected = np.rint(0.75 * u.astype(np.float64) + 0.25 * 255).astype(np.uint8)
    assert np.abs(blend_pattern(u, key, alpha=0.25).astype(int) - expected).max() <= 1


def test_key_from_image_file_is_resized_to_the_images():
    path = default_trigger_path("htbd")
    x = np.zeros((2, 10, 12, 3), np.float64)
    expected = np.asarray(Image.open(path).convert("RGB").resize((12, 10)), np.float64) / 255.0
    np.testing.assert_allclose(blend_pattern(x, path, alpha=1.0)[1], expected)
    grey = blend_pattern(np.zeros((10, 12, 1)), str(path), alpha=0.5)
    assert grey.shape == (10, 12, 1) and grey.max() <= 0.5


# ---------------------------------------------------------------------------- shipped images


@pytest.mark.parametrize("name,mode,size", [("alert", "RGBA", (64, 64)), ("htbd", "RGB", (32, 32))])
def test_shipped_images_exist(name, mode, size):
    path = default_trigger_path(name)
    assert path.is_file() and path.parent.name == "assets"
    with Image.open(path) as image:
        assert image.mode == mode and image.size == size


def test_regenerating_gives_identical_pixels(tmp_path):
    written = regenerate(tmp_path)
    for name, path in written.items():
        with Image.open(path) as fresh, Image.open(default_trigger_path(name)) as shipped:
            assert fresh.mode == shipped.mode
            np.testing.assert_array_equal(np.asarray(fresh), np.asarray(shipped))


def test_alert_shape_and_htbd_contrast():
    alert = np.asarray(draw_alert())
    assert alert[0, 0, 3] == alert[-1, 0, 3] == alert[0, -1, 3] == alert[0, 32, 3] == 0  # transparent
    assert alert[3, 32, 3] == 255 and alert[3, 32, :3].max() < 60  # dark rim at the apex
    assert alert[45, 32, 3] == 255 and alert[45, 32, :3].max() < 60  # dark exclamation mark
    assert tuple(alert[44, 22]) == (255, 204, 0, 255)  # yellow body
    cells = np.asarray(draw_htbd())[::4, ::4].astype(int)
    assert np.all(np.any(cells[:, 1:] != cells[:, :-1], axis=-1))
    assert np.all(np.any(cells[1:] != cells[:-1], axis=-1))
    assert len({tuple(c) for c in cells.reshape(-1, 3)}) >= 6


def test_unknown_shipped_name():
    with pytest.raises(
        ValueError, match=r"unknown shipped trigger 'skull'; expected one of \['alert', 'htbd'\]"
    ):
        default_trigger_path("skull")


def test_module_entry_point(tmp_path):
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "poisonlab.triggers.assets", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alert.png", "htbd.png"]
