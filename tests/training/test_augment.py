"""random_crop_flip: shape/dtype, identity settings, crops are windows (zero or reflect padding),
flips mirror (drawn or given), seeding; alternating flips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from poisonlab.training.augment import alternating_flips, random_crop_flip


def _images(n: int = 16, c: int = 3, h: int = 6, w: int = 5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # values >= 1 so a zero in the output can only come from padding
    return torch.randint(1, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize(("padding", "flip"), [(0, False), (0, True), (2, False), (3, True)])
def test_shape_and_dtype_are_kept(padding, flip):
    x = _images()
    out = random_crop_flip(x, padding=padding, flip=flip, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    f = _images().float() / 255
    assert random_crop_flip(f, padding=padding, flip=flip).dtype == torch.float32


def test_no_padding_and_no_flip_is_identity():
    x = _images()
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)


def test_input_is_not_modified():
    x = _images()
    before = x.clone()
    random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)


def test_crops_are_windows_of_the_zero_padded_image():
    pad, x = 2, _images(n=32)
    n, _, h, w = x.shape
    out = random_crop_flip(x, padding=pad, flip=False, generator=torch.Generator().manual_seed(3))
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = set()
    for i in range(n):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert matches, f"image {i} is not a window of its padded input"
        offsets.add(matches[0])
    assert len(offsets) > 3  # offsets are random, not one fixed shift
    assert not torch.equal(out, x)


def test_flip_mirrors_about_half_of_the_images():
    x = _images(n=64)
    out = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    flipped = 0
    for i in range(len(x)):
        if torch.equal(out[i], x[i].flip(-1)):
            flipped += 1
        else:
            assert torch.equal(out[i], x[i])
    assert 16 <= flipped <= 48


def test_flip_is_horizontal():
    x = torch.zeros(40, 1, 3, 4, dtype=torch.uint8)
    x[:, :, :, 0] = 255  # left column white
    out = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    right = out[:, 0, :, -1].bool().all(1)
    left = out[:, 0, :, 0].bool().all(1)
    assert bool((left ^ right).all())  # each image keeps the white column on exactly one side
    assert right.any() and left.any()


def test_seeded_generator_is_reproducible():
    x = _images(n=32)
    a = random_crop_flip(x, padding=3, flip=True, generator=torch.Generator().manual_seed(42))
    b = random_crop_flip(x, padding=3, flip=True, generator=torch.Generator().manual_seed(42))
    c = random_crop_flip(x, padding=3, flip=True, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ------------------------------------------------------------- reflect padding, alternating flips
def test_reflect_crops_are_windows_of_the_reflect_padded_image():
    pad, x = 2, _images(n=32)
    out = random_crop_flip(
        x, padding=pad, flip=False, padding_mode="reflect", generator=torch.Generator().manual_seed(4)
    )
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(torch.uint8)
    h, w = x.shape[2:]
    windows = [padded[:, :, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    for n in range(len(x)):
        assert any(torch.equal(out[n], win[n]) for win in windows)
    assert (out > 0).all()  # nothing was zero-padded


def test_reflect_padding_must_be_smaller_than_the_image():
    with pytest.raises(ValueError, match="reflect padding"):
        random_crop_flip(_images(h=4, w=4), padding=4, flip=False, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        random_crop_flip(_images(), padding=1, flip=False, padding_mode="edge")


def test_a_given_flip_mask_decides_which_images_flip():
    x = _images(n=6)
    mask = torch.tensor([True, False, False, True, True, False])
    out = random_crop_flip(x, padding=0, flip=True, flip_mask=mask)
    for n in range(6):
        assert torch.equal(out[n], x[n].flip(2) if mask[n] else x[n])


def test_alternating_flips_switch_every_epoch():
    base = torch.rand(50, generator=torch.Generator().manual_seed(0)) < 0.5
    odd, even = alternating_flips(base, 1), alternating_flips(base, 2)
    assert torch.equal(odd, base) and torch.equal(even, ~base)
    assert torch.equal(alternating_flips(base, 7), odd) and torch.equal(alternating_flips(base, 10), even)
    assert (odd ^ even).all()  # over two consecutive epochs every image is seen both ways
