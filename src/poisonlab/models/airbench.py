"""An airbench-style CIFAR-10 network ("airbench"), written from the paper's description.

Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv:2404.00498), section 3:

- a frozen 2x2 patch-whitening convolution (:mod:`poisonlab.models.whitening`) with a trainable
  bias, then GELU;
- three blocks of ``conv3x3 -> maxpool 2 -> BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU``:
  pooling before normalisation makes BatchNorm a quarter as expensive; the BatchNorm scales are
  frozen at 1 (the recipe trains their biases at a higher learning rate instead); the first
  ``c_in`` filters of every convolution start as the identity ("partial identity init");
- a global max-pool (the paper's 3x3 max-pool on the 3x3 maps of a 32x32 input) and a linear
  layer without bias whose logits are multiplied by a fixed scaling factor (1/9).

Widths: the paper's airbench94 uses 64/256/256 (about 2M parameters). The default here is
64/128/128 (about 0.57M parameters), because its forward pass costs 1.4x the chapter CNN's
(108 vs 78 MFLOP per image) where 64/256/256 costs about 3x: on 2 AVX2 cores one 40,000-image
epoch of 64/128/128 already takes ~107 s (BENCHMARKS.md, issue 15). ``widths`` selects either.

The whitening filters need the training images: :meth:`AirbenchNet.init_whitening`, which
:func:`poisonlab.training.train` calls on a freshly built model; they are then saved with the
other weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from poisonlab.models.base import PoisonlabModel
from poisonlab.models.whitening import as_nchw_uint8, frozen_whitening_conv, patch_moments, whitening_filters

DEFAULT_WIDTHS = (64, 128, 128)
#: airbench's eigenvalue floor, in units of the normalised inputs' variance
WHITENING_EPS = 5e-4
#: images used to estimate the patch covariance (the paper's 5,000)
WHITENING_IMAGES = 5000


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        # The first c_in filters pass their input channel through unchanged: at initialisation
        # each block starts close to an identity map (airbench's "identity initialization").
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def _norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    bn.weight.requires_grad_(False)  # scale frozen at 1; the bias trains
    return bn


class AirbenchBlock(nn.Module):
    """conv -> maxpool 2 -> BN -> GELU -> conv -> BN -> GELU; halves the spatial size."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1, self.norm1 = _conv(c_in, c_out), _norm(c_out, bn_momentum)
        self.conv2, self.norm2 = _conv(c_out, c_out), _norm(c_out, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(PoisonlabModel):
    """The airbench-style network.

    Parameters
    ----------
    input_shape : tuple of int
        (H, W, C), H and W >= 16 (a 2x2 whitening and three 2x poolings), C in {1, 3}.
    num_classes : int
        Number of classes, >= 2.
    widths : tuple of 3 ints
        Channels of the three blocks, each >= 4; default 64/128/128 (see the module docstring).
    bn_momentum : float
        PyTorch BatchNorm momentum, in (0, 1]: 0.4 is the paper's 0.6 in Keras' convention.
    logit_scale : float
        Fixed factor on the logits, > 0 (the paper's 1/9).
    mean, std : sequence of float, optional
        Input normalisation (default CIFAR-10's for 3 channels).
    """

    arch = "airbench"
    whitening_kernel = 2

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, int, int] = DEFAULT_WIDTHS,
        bn_momentum: float = 0.4,
        logit_scale: float = 1.0 / 9.0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std)
        h, w, c = self.input_shape
        if h < 16 or w < 16:
            raise ValueError(f"airbench needs images of at least 16x16 pixels, got {h}x{w}")
        if len(widths) != 3 or any(int(v) < 4 for v in widths):
            raise ValueError(f"widths must be 3 channel counts >= 4, got {tuple(widths)}")
        if not 0 < bn_momentum <= 1 or not logit_scale > 0:
            raise ValueError(
                f"need 0 < bn_momentum <= 1 and logit_scale > 0, got {bn_momentum}, {logit_scale}"
            )
        self.widths = tuple(int(v) for v in widths)
        self.bn_momentum, self.logit_scale = float(bn_momentum), float(logit_scale)
        self.whiten = frozen_whitening_conv(c, self.whitening_kernel)
        c_in, blocks = self.whiten.out_channels, []
        for width in self.widths:
            blocks.append(AirbenchBlock(c_in, width, self.bn_momentum))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c_in, num_classes, bias=False)

    @property
    def whitening_bias(self) -> nn.Parameter:
        """The whitening layer's bias: the recipe trains it for the first epochs only."""
        return self.whiten.bias

    @torch.no_grad()
    def init_whitening(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        max_images: int = WHITENING_IMAGES,
        eps: float = WHITENING_EPS,
    ) -> torch.Tensor:
        """Set the whitening filters from the 2x2 patches of training images (in place).

        Parameters
        ----------
        images : numpy.ndarray or torch.Tensor
            uint8 training images (N, H, W, C) of the model's shape; the first ``max_images``
            are used.
        max_images : int
            Images used for the covariance estimate (>= 1).
        eps : float
            Eigenvalue floor (>= 0), in units of the normalised inputs.

        Returns
        -------
        torch.Tensor
            The patch covariance's eigenvalues, (C * 4,) float64, descending.
        """
        c = self.input_shape[2]
        x = as_nchw_uint8(images, c)
        if tuple(x.shape[2:]) != tuple(self.input_shape[:2]) or len(x) == 0 or max_images < 1:
            raise ValueError(
                f"whitening needs >= 1 image of shape {self.input_shape} and max_images >= 1, "
                f"got {len(x)} images of {tuple(x.shape[2:])}, max_images={max_images}"
            )
        dev = self.whiten.weight.device
        mean, cov = patch_moments(
            x[:max_images].to(dev), self.whitening_kernel, prepare=lambda t: self.normalize(t)
        )
        weight, bias, values = whitening_filters(
            mean.cpu(), cov.cpu(), channels=c, kernel=self.whitening_kernel, eps=eps
        )
        self.whiten.weight.copy_(weight)
        self.whiten.bias.copy_(bias)
        return values

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally max-pooled activations of the last block, shape (N, widths[2])."""
        x = self.blocks(F.gelu(self.whiten(self.normalize(x))))
        return torch.amax(x, dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features) * self.logit_scale

    def spec(self) -> dict:
        return {
            **super().spec(),
            "widths": list(self.widths),
            "bn_momentum": self.bn_momentum,
            "logit_scale": self.logit_scale,
        }
