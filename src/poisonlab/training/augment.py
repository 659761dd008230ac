"""Batched augmentation on uint8 image tensors (no per-image Python loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # options imports nothing from here, but keep augment free of pydantic
    from poisonlab.training.options import AugmentConfig


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored about the border pixels (numpy's ``reflect`` mode)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def random_crop_flip(
    x: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
    padding_mode: str = "zeros",
    flip_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop after padding plus horizontal flip.

    Parameters
    ----------
    x : torch.Tensor
        Images, shape (N, C, H, W), any dtype.
    padding : int
        Padding on each side before cropping back to (H, W), i.e. a random shift of up to
        ``padding`` pixels per axis; 0 disables cropping.
    flip : bool
        Flip images horizontally: those of ``flip_mask``, else each with probability 0.5.
    generator : torch.Generator, optional
        Source of randomness (for deterministic training).
    padding_mode : {"zeros", "reflect"}
        Zero padding, or the border mirrored (``reflect`` needs ``padding < min(H, W)``).
    flip_mask : torch.Tensor, optional
        Bool (N,): which images to flip (alternating flips decide outside); drawn when None.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    n, _, h, w = x.shape
    if padding_mode not in ("zeros", "reflect"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
    if padding > 0:
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        if padding_mode == "zeros":
            x = F.pad(x, (padding, padding, padding, padding))[batch, chans, rows, cols]
        else:  # index the image itself: no padded copy, any dtype
            if padding >= min(h, w):
                raise ValueError(f"reflect padding must be < the image side {min(h, w)}, got {padding}")
            x = x[batch, chans, _reflect(rows - padding, h), _reflect(cols - padding, w)]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5 if flip_mask is None else flip_mask
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def alternating_flips(base: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images to flip in ``epoch`` (1-based) under airbench's alternating flip.

    Jordan 2024 (arXiv:2404.00498, section 3.6): ``base`` is one random mask drawn before
    training; odd epochs flip the images it marks, even epochs the others, so every image is
    seen both ways in any two consecutive epochs.

    Parameters
    ----------
    base : torch.Tensor
        Bool (N,), one entry per training image.
    epoch : int
        1-based epoch number.

    Returns
    -------
    torch.Tensor
        Bool (N,).
    """
    return base if epoch % 2 == 1 else ~base


def crop_flip_of(
    config: AugmentConfig | None, generator: torch.Generator | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A recipe's crop and random flip as one function of a uint8 (N, C, H, W) batch.

    For passes that must see images as training showed them (the BatchNorm recalibration);
    flips are random even under alternating flips, which show each image both ways over two
    epochs: the same share. None when the recipe does not augment.
    """
    if config is None:
        return None
    return lambda batch: random_crop_flip(
        batch,
        padding=config.crop_padding,
        flip=config.flip,
        generator=generator,
        padding_mode=config.padding_mode,
    )
