"""The chapter's CIFAR-10 CNN ("simple-cifar10"), rebuilt in PyTorch.

Three blocks of ``[Conv3x3 same -> ReLU -> BatchNorm] x 2 -> MaxPool 2 -> Dropout`` with 32/64/128
filters and dropout 0.3/0.5/0.5, then ``Flatten -> Dense 128 -> ReLU -> BatchNorm -> Dropout 0.5 ->
Dense(classes)``: about 552k parameters at 32x32x3, the Keras model the book trains for 100 epochs.
The order ReLU-before-BatchNorm is the chapter's and is kept on purpose.

The network adapts to input size and channels (digits are 8x8x1): the flattened size is computed
from the input shape, which must be at least 8x8 (three 2x poolings).
"""

from __future__ import annotations

import torch
from torch import nn

from poisonlab.models.base import PoisonlabModel

CHAPTER_DROPOUT = (0.3, 0.5, 0.5, 0.5)


def _conv_block(c_in: int, c_out: int, dropout: float, bn_momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out, momentum=bn_momentum),
        nn.Conv2d(c_out, c_out, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out, momentum=bn_momentum),
        nn.MaxPool2d(2),
        # Identity when the rate is 0: a zero-rate Dropout still draws a random mask on CPU.
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
    )


class SimpleCifarCNN(PoisonlabModel):
    """The chapter's CNN.

    Parameters
    ----------
    input_shape : tuple of int
        (H, W, C) of the images, H and W >= 8, C in {1, 3}.
    num_classes : int
        Number of output classes (>= 2).
    dropout : tuple of 4 floats
        Dropout after block 1, 2, 3 and after the dense layer; the chapter's (0.3, 0.5, 0.5, 0.5)
        by default, each in [0, 1).
    bn_momentum : float
        PyTorch BatchNorm momentum. 0.01 matches Keras' default (0.99) used in the chapter, which
        matters when fine-tuning on a handful of images.
    mean, std : sequence of float
        Per-channel normalisation applied inside the model to inputs in [0, 1].
    """

    arch = "simple-cifar10"

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        dropout: tuple[float, float, float, float] = CHAPTER_DROPOUT,
        bn_momentum: float = 0.01,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(input_shape=input_shape, num_classes=num_classes, mean=mean, std=std)
        h, w, c = self.input_shape
        if h < 8 or w < 8:
            raise ValueError(f"simple-cifar10 needs images of at least 8x8 pixels, got {h}x{w}")
        if len(dropout) != 4 or not all(0.0 <= p < 1.0 for p in dropout):
            raise ValueError(f"dropout must be 4 rates in [0, 1), got {dropout}")
        self.dropout = tuple(float(p) for p in dropout)
        self.bn_momentum = float(bn_momentum)
        self.blocks = nn.Sequential(
            _conv_block(c, 32, dropout[0], bn_momentum),
            _conv_block(32, 64, dropout[1], bn_momentum),
            _conv_block(64, 128, dropout[2], bn_momentum),
        )
        flat = 128 * (h // 8) * (w // 8)
        self.penultimate = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 128),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(128, momentum=bn_momentum),
        )
        self.head_dropout = nn.Dropout(dropout[3]) if dropout[3] > 0 else nn.Identity()
        self.classifier = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after Dense 128 + ReLU + BN), shape (N, 128)."""
        return self.penultimate(self.blocks(self.normalize(x)))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_dropout(features))

    def spec(self) -> dict:
        return {**super().spec(), "dropout": list(self.dropout), "bn_momentum": self.bn_momentum}
