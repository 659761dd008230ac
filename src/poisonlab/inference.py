"""Batched inference on uint8 images: logits, probabilities and penultimate features.

All defenses that work in feature space share :func:`forward_pass`, which returns logits and
features from one pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from poisonlab.device import autocast, resolve_device, use_bf16
from poisonlab.models.base import PoisonlabModel
from poisonlab.reprs import concise_repr
from poisonlab.threads import compute_threads, estimate_flops


def check_images(model: PoisonlabModel, images: np.ndarray) -> None:
    """Raise ValueError unless ``images`` is uint8 (N, H, W, C) of the model's input shape."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        raise ValueError(f"images must be a uint8 array (N, H, W, C), got {got}")
    if tuple(images.shape[1:]) != tuple(model.input_shape):
        raise ValueError(
            f"model expects images of shape {tuple(model.input_shape)} (H, W, C), "
            f"got {tuple(images.shape[1:])}"
        )


def to_input(
    batch: np.ndarray | torch.Tensor, device: torch.device, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1] on ``device``.

    The permuted NHWC buffer already has channels_last strides, so no copy is made for them.
    """
    if isinstance(batch, np.ndarray):
        batch = np.ascontiguousarray(batch)  # torch refuses negative strides (flipped views)
    t = torch.as_tensor(batch).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@dataclass(frozen=True)
class ForwardResult:
    """Outputs of one pass: ``logits`` (N, K) float32 and ``features`` (N, D) float32 or None."""

    logits: np.ndarray
    features: np.ndarray | None

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def __repr__(self) -> str:
        return concise_repr(self, logits=self.logits, features=self.features)


@torch.no_grad()
def forward_pass(
    model: PoisonlabModel,
    images: np.ndarray,
    *,
    features: bool = False,
    batch_size: int = 1000,
    device: str | torch.device = "auto",
    precision: str = "fp32",
) -> ForwardResult:
    """Run ``model`` in eval mode over ``images`` (uint8, (N, H, W, C)) in batches.

    Parameters
    ----------
    features : bool
        Also return the penultimate activations, shape (N, D).
    precision : {"fp32", "bf16", "auto"}
        fp32 by default, so that scores do not depend on the host; ``bf16`` autocasts to
        bfloat16; ``auto`` uses bf16 only where it is fast (CUDA, AMX CPUs). Both are opt-in.
    """
    check_images(model, images)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    bf16 = use_bf16(precision, dev)
    was_training = model.training
    model.to(dev)
    batch_flops = estimate_flops(model, model.input_shape) * min(batch_size, max(len(images), 1))
    model.eval()
    logits, feats = [], []
    with compute_threads(batch_flops, dev):
        try:
            for start in range(0, len(images), batch_size):
                x = to_input(images[start : start + batch_size], dev)
                with autocast(dev, bf16):
                    f = model.features(x)
                    z = model.head(f)
                logits.append(z.float().cpu())
                if features:
                    feats.append(f.float().cpu())
        finally:
            model.train(was_training)
    k = model.num_classes
    out_logits = torch.cat(logits).numpy() if logits else np.zeros((0, k), np.float32)
    out_feats = (torch.cat(feats).numpy() if feats else np.zeros((0, 0), np.float32)) if features else None
    return ForwardResult(logits=out_logits, features=out_feats)


def predict(model: PoisonlabModel, images: np.ndarray, **kwargs) -> np.ndarray:
    """Predicted class indices, shape (N,) int64."""
    return forward_pass(model, images, **kwargs).predictions.astype(np.int64)
