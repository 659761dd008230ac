"""Refusals: every bad input is rejected with a message saying what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.triggers import (
    add_pattern_bd,
    add_single_bd,
    blend_pattern,
    cyan_square,
    default_trigger_path,
    insert_image,
)

ALERT = default_trigger_path("alert")
ALL = [
    add_single_bd,
    add_pattern_bd,
    lambda x: insert_image(x, ALERT, random=False, size=(3, 3), mode=None),
    cyan_square,
    blend_pattern,
]
IDS = ["single", "pattern", "insert", "cyan", "blended"]


@pytest.mark.parametrize("fn", ALL, ids=IDS)
@pytest.mark.parametrize(
    "x,match",
    [
        (np.full((2, 8, 8, 3), 1.5), r"expected float values in \[0, 1\] .*got values in \[.*, 1\.5\]"),
        (np.full((2, 8, 8, 3), -0.25, np.float32), r"got values in \[-0\.25, -0\.25\]"),
        (np.full((2, 8, 8, 3), np.nan), r"expected float values in \[0, 1\].*got NaN values"),
        (np.zeros((2, 8, 8, 3), np.int16), r"expected dtype uint8 .*float16/32/64.*got dtype int16"),
        (np.zeros((2, 8, 8, 3), np.int64), r"got dtype int64"),
        (np.zeros((2, 8, 8, 3), bool), r"got dtype bool"),
        (np.zeros((2, 8, 8, 3), np.complex64), r"got dtype complex64"),
        ([[0.0] * 8] * 8, r"expected a numpy\.ndarray of images, got list"),
        (np.zeros((1, 2, 8, 8, 3)), r"expected \(H, W\), \(N, H, W\).*got shape \(1, 2, 8, 8, 3\) \(5-D\)"),
        (np.zeros(8), r"got shape \(8,\) \(1-D\)"),
        (np.zeros((2, 3, 8, 8)), r"looks like \(N, C, H, W\); pass channels_first=True"),
    ],
    ids=["above1", "negative", "nan", "int16", "int64", "bool", "complex", "list", "5d", "1d", "nchw"],
)
def test_bad_images_refused(fn, x, match):
    with pytest.raises(ValueError, match=match):
        fn(x)


def test_channels_first_with_channels_last_batch_refused():
    with pytest.raises(
        ValueError, match=r"channels_first=True expects \(N, C, H, W\).*got shape \(2, 8, 8, 3\)"
    ):
        add_single_bd(np.zeros((2, 8, 8, 3)), channels_first=True)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: add_single_bd(x, pixel_value=2), r"pixel_value must be in \[0, 1\], got 2"),
        (lambda x: add_single_bd(x, distance=0), r"distance must be an integer >= 1, got 0"),
        (lambda x: add_single_bd(x, distance=9), r"expected 1 <= distance <= 8 .*8x8.*got 9"),
        (lambda x: add_pattern_bd(x, distance=2.0), r"distance must be an integer >= 1, got 2\.0"),
        (
            lambda x: add_pattern_bd(x, pixel_value=True),
            r"pixel_value must be a number in \[0, 1\], got True",
        ),
        (
            lambda x: insert_image(x, ALERT, mode="RGB"),
            r"trigger image of size 64x64 \(HxW\) does not fit inside "
            r"images of size 8x8",
        ),
        (lambda x: insert_image(x, ALERT, size=(9, 2), mode="RGB"), r"size 9x2 \(HxW\) does not fit"),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="RGB", blend=1.5),
            r"blend must be in \[0, 1\], got 1\.5",
        ),
        (lambda x: insert_image(x, ALERT, size=(3, 3), blend=-0.1), r"blend must be in \[0, 1\], got -0\.1"),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3)),
            r"mode: 'L' needs 1-channel images, got 3 channels; "
            r"pass mode='RGB' or mode=None",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="CMYK"),
            r"mode must be one of \[None, 'L', 'RGB'\], got 'CMYK'",
        ),
        (
            lambda x: insert_image(x, ALERT, size=3, mode="RGB"),
            r"size must be None, 'auto' or a \(height, width\) pair of integers >= 1, got 3",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(0, 3), mode="RGB"),
            r"size must be None, 'auto' or a \(height, width\) pair of integers >= 1, got \(0, 3\)",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="RGB", random=False, x_shift=-1),
            r"x_shift must be an integer >= 0, got -1",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="RGB", seed=1, rng=np.random.default_rng()),
            r"give at most one of seed and rng, got both",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="RGB", seed=-1),
            r"seed must be an integer >= 0, got -1",
        ),
        (
            lambda x: insert_image(x, ALERT, size=(3, 3), mode="RGB", rng=np.random.RandomState(0)),
            r"rng must be None or a numpy\.random\.Generator, got RandomState",
        ),
        (
            lambda x: insert_image(x, 42, size=(3, 3), mode="RGB"),
            r"backdoor_path must be a path \(str or os\.PathLike\), got 42",
        ),
        (
            lambda x: cyan_square(x, size=9),
            r"cyan square of size 9x9 \(HxW\) does not fit inside images of size 8x8",
        ),
        (lambda x: cyan_square(x, color=(0, 255)), r"color: expected 3 component\(s\).*got 2"),
        (lambda x: cyan_square(x, color=(0, 256, 0)), r"color must be a sequence of numbers in \[0, 255\]"),
        (lambda x: cyan_square(x, mode="xor"), r"mode must be one of \['add', 'replace'\], got 'xor'"),
        (lambda x: blend_pattern(x, alpha=1.01), r"alpha must be in \[0, 1\], got 1\.01"),
        (
            lambda x: blend_pattern(x, pattern=np.zeros((7, 8, 3))),
            r"pattern: expected an array of shape \(8, 8\), "
            r"\(8, 8, 1\) or \(8, 8, 3\).*got \(7, 8, 3\)",
        ),
        (
            lambda x: blend_pattern(x, pattern=np.full((8, 8), 2.0)),
            r"pattern: expected float values in \[0, 1\]",
        ),
        (
            lambda x: blend_pattern(x, pattern=[1, 2]),
            r"pattern must be None, a path \(str or os\.PathLike\) or a numpy array, got \[1, 2\]",
        ),
    ],
)
def test_bad_parameters_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros((2, 8, 8, 3), np.float32))


def test_insert_image_needs_one_or_three_channels():
    with pytest.raises(ValueError, match=r"expected images with 1 channel .* or 3 channels .*got 4 channels"):
        insert_image(np.zeros((2, 8, 8, 4)), ALERT, size=(3, 3), mode=None)


def test_missing_and_unreadable_trigger_files(tmp_path):
    x = np.zeros((1, 8, 8, 3), np.float32)
    missing = tmp_path / "nope.png"
    with pytest.raises(
        FileNotFoundError, match=r"backdoor_path: expected an existing image file, got '.*nope\.png'"
    ):
        insert_image(x, missing, size=(3, 3), mode="RGB")
    with pytest.raises(FileNotFoundError, match=r"pattern: expected an existing image file"):
        blend_pattern(x, pattern=missing)
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(
        ValueError, match=r"backdoor_path: expected an image file Pillow can read, got '.*junk\.png'"
    ):
        insert_image(x, junk, size=(3, 3), mode="RGB")
    with pytest.raises(ValueError, match=r"backdoor_path: expected an image file Pillow can read"):
        insert_image(x, junk, mode="RGB")  # size=None reads the header first
    with pytest.raises(ValueError, match=r"pattern: expected an image file Pillow can read"):
        blend_pattern(x, pattern=junk)
    with pytest.raises(FileNotFoundError):
        insert_image(x, tmp_path, size=(3, 3), mode="RGB")  # a folder is not a file
