"""PreAct ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027): the architecture most backdoor papers (BackdoorBench, Schwarzschild et al.
2021) report on. CIFAR variant: 3x3 stem, no stem pooling, global average pooling, so any input
of at least 8x8 pixels works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poisonlab.models.base import PoisonlabModel


class PreActBlock(nn.Module):
    """BN -> ReLU -> Conv3x3 -> BN -> ReLU -> Conv3x3 with an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.stride = stride
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            # A strided 1x1 convolution is a 1x1 convolution of the subsampled input. It is built
            # that way because oneDNN 3.12's AVX2 ``jit_1x1`` backward-weights kernel (torch 2.13.0)
            # corrupts the heap for channels_last inputs with few channels on one thread (seen: 4 -> 8
            # channels, stride 2, on an AMD EPYC without AVX-512); the stride-1 kernel is unaffected.
            # Same weights and outputs, so checkpoints load either way.
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        s = self.stride
        shortcut = x if self.shortcut is None else self.shortcut(out[:, :, ::s, ::s])
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(PoisonlabModel):
    """PreAct ResNet-18, ~11.2M parameters for 10 classes; penultimate features have 512 dims.

    Parameters
    ----------
    input_shape : tuple of int
        (H, W, C), H and W >= 8, C in {1, 3}.
    num_classes : int
        Number of classes.
    width : int
        Channels of the first stage (64 in the paper); stages use width x (1, 2, 4, 8).
    """

    arch = "preact-resnet18"

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 64,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std)
        h, w, c = self.input_shape
        if h < 8 or w < 8:
            raise ValueError(f"preact-resnet18 needs images of at least 8x8 pixels, got {h}x{w}")
        if width < 4:
            raise ValueError(f"width must be >= 4, got {width}")
        self.width = int(width)
        self.stem = nn.Conv2d(c, width, 3, padding=1, bias=False)
        stages, c_in = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            stride = 1 if i == 0 else 2
            stages += [PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out, 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(c_in)
        self.classifier = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled activations after the last BN+ReLU, shape (N, 8 * width)."""
        out = self.stages(self.stem(self.normalize(x)))
        out = F.relu(self.final_bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def spec(self) -> dict:
        return {**super().spec(), "width": self.width}
