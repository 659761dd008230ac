"""Batched augmentation on uint8 image tensors (no per-image Python loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip.

    Parameters
    ----------
    x : torch.Tensor
        Images, shape (N, C, H, W), any dtype.
    padding : int
        Zero padding on each side before cropping back to (H, W); 0 disables cropping.
    flip : bool
        Flip each image horizontally with probability 0.5.
    generator : torch.Generator, optional
        Source of randomness (for deterministic training).

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x
