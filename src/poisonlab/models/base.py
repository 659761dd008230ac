"""Common interface of poisonlab's classifiers.

Every model takes float images in [0, 1], shape (N, C, H, W) (channels_last memory format is
fine), normalises them itself (so attacks can optimise in pixel space), and exposes its
penultimate-layer activations through :meth:`PoisonlabModel.features` for the defenses.
"""

from __future__ import annotations

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class PoisonlabModel(nn.Module):
    """Base class: input normalisation, ``features`` -> ``head`` split, serialisable spec.

    Parameters
    ----------
    input_shape : tuple of int
        (H, W, C) of the images; C in {1, 3}.
    num_classes : int
        Number of classes, >= 2.
    mean, std : sequence of float or None
        Per-channel statistics of inputs in [0, 1]; ``None`` uses CIFAR-10's for 3 channels and
        (0.5,), (0.25,) for one channel.
    """

    arch = "base"

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or input_shape[2] not in (1, 3):
            raise ValueError(f"input_shape must be (H, W, C) with C in {{1, 3}}, got {tuple(input_shape)}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        channels = int(input_shape[2])
        mean = tuple(mean) if mean is not None else (CIFAR10_MEAN if channels == 3 else (0.5,))
        std = tuple(std) if std is not None else (CIFAR10_STD if channels == 3 else (0.25,))
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"mean/std must have {channels} entries with std > 0, got {mean}, {std}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Penultimate-layer activations, shape (N, D)."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Logits from penultimate features, shape (N, num_classes)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (N, num_classes), for images in [0, 1] of shape (N, C, H, W)."""
        return self.head(self.features(x))

    def spec(self) -> dict:
        """JSON-serialisable constructor arguments (rebuilds the architecture)."""
        return {
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "mean": [float(v) for v in self.mean.flatten()],
            "std": [float(v) for v in self.std.flatten()],
        }

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
