"""Patch whitening: a frozen first convolution that decorrelates the pixels of small patches.

Following Page's "How to train your ResNet" (2018) and Jordan's airbench ("94% on CIFAR-10 in
3.29 seconds on a single GPU", arXiv:2404.00498, section 3.2), the first layer of the network is
a ``k x k`` convolution whose ``d = C k^2`` filters are the eigenvectors of the training images'
patch covariance, each divided by the square root of its eigenvalue (plus a small ``eps``), and
the same ``d`` filters negated (so a following GELU sees both signs). Its weights are never
trained; on whitened patches every direction has unit variance, which is what makes the high
learning rates of the short schedules stable.

Here the covariance is centred (the patch mean is subtracted), and the bias is set so that the
whitened outputs have zero mean: on CIFAR-10 normalised by its channel statistics the mean patch
is almost zero, so this matches airbench's uncentred estimate there, and it stays a whitening
(identity covariance) on data that is not centred.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["as_nchw_uint8", "frozen_whitening_conv", "patch_moments", "whitening_filters"]


def _patches(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """All ``kernel x kernel`` patches of float images (N, C, H, W) as rows (M, C * kernel^2).

    Row layout is (channel, row, column), the layout of a flattened conv filter.
    """
    n, c = x.shape[:2]
    p = x.unfold(2, kernel, 1).unfold(3, kernel, 1)  # (N, C, H', W', k, k)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel * kernel)


@torch.no_grad()
def patch_moments(
    images: torch.Tensor, kernel: int, *, prepare=None, chunk: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and centred covariance of all ``kernel x kernel`` patches, accumulated in float64.

    Parameters
    ----------
    images : torch.Tensor
        uint8 or float images, (N, C, H, W) (any memory format).
    kernel : int
        Patch side, >= 1 and <= min(H, W).
    prepare : callable, optional
        Applied to each float32 chunk of images in [0, 1] before the patches are taken (the
        model's input normalisation).
    chunk : int
        Images per chunk (bounds memory: 500 CIFAR images give 480k patches).

    Returns
    -------
    mean : torch.Tensor
        (d,) float64, ``d = C * kernel^2``.
    cov : torch.Tensor
        (d, d) float64, symmetric positive semi-definite.
    """
    n, c, h, w = images.shape
    if n == 0 or kernel < 1 or kernel > min(h, w):
        raise ValueError(
            f"need >= 1 image of at least {kernel}x{kernel} pixels, got shape {tuple(images.shape)}"
        )
    d = c * kernel * kernel
    total, outer, count = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
    for start in range(0, n, chunk):
        x = images[start : start + chunk]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if prepare is not None:
            x = prepare(x)
        rows = _patches(x.contiguous(), kernel).double()
        total += rows.sum(0)
        outer += rows.T @ rows
        count += len(rows)
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    return mean, (cov + cov.T) / 2


def whitening_filters(
    mean: torch.Tensor, cov: torch.Tensor, *, channels: int, kernel: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights and bias of the ``2 d`` whitening filters from the patch moments.

    Parameters
    ----------
    mean, cov : torch.Tensor
        (d,) and (d, d) from :func:`patch_moments`.
    channels, kernel : int
        Input channels and patch side, ``d = channels * kernel^2``.
    eps : float
        Added to every eigenvalue before the square root (>= 0): keeps near-constant directions
        (eigenvalue ~ 0) from being amplified without bound.

    Returns
    -------
    weight : torch.Tensor
        (2 d, channels, kernel, kernel) float32: ``V^T / sqrt(lambda + eps)`` (largest eigenvalue
        first), then its negation.
    bias : torch.Tensor
        (2 d,) float32: ``-W mean`` then ``+W mean``, so whitened outputs have zero mean.
    eigenvalues : torch.Tensor
        (d,) float64, descending.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    scale = 1.0 / torch.sqrt(values + eps)
    if not torch.isfinite(scale).all():
        raise ValueError("the patch covariance is singular and eps is 0: give eps > 0")
    w = vectors.T * scale[:, None]  # (d, d): row i = i-th eigenvector / sqrt(lambda_i + eps)
    b = -(w @ mean)
    weight = torch.cat([w, -w]).reshape(-1, channels, kernel, kernel).float()
    return weight, torch.cat([b, -b]).float(), values


def as_nchw_uint8(images: np.ndarray | torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images (N, H, W, C) as a torch (N, C, H, W) view; a ValueError for anything else."""
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != channels:
        got = f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}"
        raise ValueError(f"whitening needs uint8 images (N, H, W, {channels}), got {got}")
    return t.permute(0, 3, 1, 2)


def frozen_whitening_conv(channels: int, kernel: int) -> nn.Conv2d:
    """The ``channels -> 2 * channels * kernel^2`` convolution, weights frozen, bias trainable."""
    conv = nn.Conv2d(channels, 2 * channels * kernel * kernel, kernel, padding=0, bias=True)
    conv.weight.requires_grad_(False)
    nn.init.zeros_(conv.bias)
    return conv
