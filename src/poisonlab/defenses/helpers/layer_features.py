"""Per-channel activations of every hidden layer of a model, collected in one batched pass.

Backdoor purification that looks only at the penultimate layer misses poison whose trace lives
in earlier layers (Hou et al., "FLARE: Towards Universal Dataset Purification against Backdoor
Attacks", arXiv:2411.19479, 2024: the separability of poisoned and benign samples "varies
across different hidden layers"). :func:`layer_features` records, for every convolution and
dense layer that :meth:`PoisonlabModel.features` runs, one value per output channel and image,
plus the penultimate features themselves as the last layer.

Spatial maps are pooled per channel as they are produced, inside the forward hook: memory stays
at (N, total channels), and in-place ReLUs that follow a convolution (the chapter CNN's
``Conv -> ReLU(inplace) -> BN``) cannot overwrite what was recorded. ``"max"`` pooling keeps a
small, localised trigger's response (a 3x3 patch is 1 % of a 32x32 map, which an average would
dilute a hundredfold); ``"mean"`` is the usual global average pooling.

The classifier head is not hooked (its output is the logits, not a hidden layer): the hooks
record only while ``model.features`` runs.

:func:`layer_abnormality` reduces each layer to how abnormally large its most excited channel is
(FLARE's per-layer "abnormal activation"; see :mod:`poisonlab.defenses.detectors.flare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from poisonlab.defenses.helpers.robust_stats import robust_scale
from poisonlab.device import resolve_device
from poisonlab.inference import check_images, to_input
from poisonlab.models.base import PoisonlabModel
from poisonlab.threads import compute_threads, estimate_flops

if TYPE_CHECKING:  # the context may import this module to cache its result: no import at run time
    from poisonlab.defenses.context import ScanContext

__all__ = [
    "HOOKED_TYPES",
    "POOLINGS",
    "LayerFeatures",
    "context_layer_features",
    "hidden_layers",
    "layer_abnormality",
    "layer_features",
]

POOLINGS = ("max", "mean")
#: Module types whose outputs are recorded (every other module is a re-scaling or a non-linearity
#: of one of these outputs, or a container).
HOOKED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
PENULTIMATE = "penultimate"


@dataclass(frozen=True)
class LayerFeatures:
    """Pooled activations of the hidden layers, concatenated along the columns.

    Attributes
    ----------
    values : np.ndarray, shape (N, D), float32
        Layer by layer, in execution order: the pooled output channels of each hooked layer,
        the penultimate features last.
    names : tuple of str
        Module name of each layer (``"penultimate"`` for the features output), length L.
    offsets : np.ndarray, shape (L + 1,), int64
        Layer ``i`` occupies the columns ``offsets[i]:offsets[i + 1]`` of ``values``.
    pooling : {"max", "mean"}
        How spatial maps were reduced to one value per channel.
    """

    values: np.ndarray
    names: tuple[str, ...]
    offsets: np.ndarray
    pooling: str

    @property
    def n_layers(self) -> int:
        return len(self.names)

    def layer(self, i: int) -> np.ndarray:
        """Columns of layer ``i``, shape (N, C_i) (a view of ``values``)."""
        return self.values[:, self.offsets[i] : self.offsets[i + 1]]

    def widths(self) -> list[int]:
        """Number of channels of every layer, length L."""
        return np.diff(self.offsets).tolist()


def hidden_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every convolution and dense layer of ``model``, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, HOOKED_TYPES)]


def _pool(out: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, C, *spatial) or (N, C) -> (N, C) float32."""
    out = out.detach().float()
    if out.dim() <= 2:
        return out.reshape(out.shape[0], -1)
    flat = out.flatten(2)
    return flat.amax(dim=2) if pooling == "max" else flat.mean(dim=2)


@torch.no_grad()
def layer_features(
    model: PoisonlabModel,
    images: np.ndarray,
    *,
    pooling: str = "max",
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> LayerFeatures:
    """Run ``model`` (eval mode, fp32) over uint8 ``images`` (N, H, W, C) and pool every hidden layer.

    One forward pass of ``model.features`` per batch; the caller's model is put back in its
    training mode afterwards and its hooks removed, even on error.

    Returns
    -------
    LayerFeatures
        ``values`` (N, D) float32 in execution order of the layers (a layer that runs twice,
        which none of poisonlab's models has, would be recorded at its first call only).

    Raises
    ------
    ValueError
        For images that are not uint8 (N, H, W, C) of the model's input shape, or an unknown
        ``pooling``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    check_images(model, images)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    layers = hidden_layers(model)
    batch: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def record(name: str):
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            if name not in batch:  # first call only: keeps one column block per module
                batch[name] = _pool(out, pooling)
                if name not in order:
                    order.append(name)

        return hook

    was_training = model.training
    model.to(dev).eval()
    handles = [m.register_forward_hook(record(name)) for name, m in layers]
    chunks: list[torch.Tensor] = []
    flops = estimate_flops(model, model.input_shape) * min(batch_size, max(len(images), 1))
    try:
        with compute_threads(flops, dev):
            for start in range(0, len(images), batch_size):
                batch.clear()
                feats = model.features(to_input(images[start : start + batch_size], dev))
                blocks = [batch[name] for name in order] + [_pool(feats, pooling)]
                chunks.append(torch.cat(blocks, dim=1).cpu())  # one device -> host copy per batch
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    names = (*order, PENULTIMATE)
    widths = [int(b.shape[1]) for b in blocks] if chunks else [0] * len(names)
    values = torch.cat(chunks).numpy() if chunks else np.zeros((0, sum(widths)), np.float32)
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    return LayerFeatures(values=values, names=names, offsets=offsets, pooling=pooling)


def layer_abnormality(features: LayerFeatures, rows: np.ndarray | None = None) -> np.ndarray:
    """How abnormally large each layer's most excited channel is, aligned across layers, (N, L).

    Per layer ``l`` with pooled channels ``v`` (N, C_l): every channel is centred on its median
    and the layer gets one robust scale ``s_l`` (normal-consistent MAD of all its centred values,
    :func:`~poisonlab.defenses.helpers.robust_stats.robust_scale`), so that a channel is abnormal
    when it is large *for that layer* (a trigger's activations are, FLARE's observation), not
    merely large for a channel that is silent on most images. The sample's value is
    ``log1p(max(0, max_c (v_c - median_c) / s_l))``: the log tames the long tail, in which
    triggered samples lie far apart from one another. Each column is then put on one robust
    z-scale (median 0, robust SD 1) so that layers of any width and depth weigh alike: the
    value-range alignment of the paper.

    Parameters
    ----------
    features : LayerFeatures
        Pooled activations of every hidden layer, ``values`` (N, D).
    rows : np.ndarray of int, optional
        The rows from which medians and scales are estimated (a subsample bounds the cost on
        large datasets); all rows by default.

    Returns
    -------
    np.ndarray, shape (N, L), float64
        Robust z-scores, typically in [-3, 3] for benign samples; poison that excites some layer
        far beyond what benign images do lies many units above.
    """
    n = features.values.shape[0]
    out = np.empty((n, features.n_layers), dtype=np.float64)
    for i in range(features.n_layers):
        v = features.layer(i)
        ref = v if rows is None else v[rows]
        med = np.median(ref, axis=0)
        scale = float(robust_scale((ref - med).ravel(), 0.0))
        top = (v - med).max(axis=1).astype(np.float64) / scale
        out[:, i] = np.log1p(np.maximum(top, 0.0))
    ref = out if rows is None else out[rows]
    center = np.median(ref, axis=0)
    return (out - center) / robust_scale(ref, center, axis=0)


def context_layer_features(
    context: ScanContext, who: str, *, pooling: str = "max", batch_size: int = 512
) -> LayerFeatures:
    """Max-pooled layer features of ``context.dataset``, from the scan's cache when it has one.

    A :class:`~poisonlab.defenses.context.ScanContext` with a ``layer_features(who)`` method
    computes them once per scan (for every detector that reads hidden layers); without it, or
    for another ``pooling``, they are computed here.

    Raises
    ------
    ValueError
        When the context holds only a forward pass: hidden layers need the model itself.
    """
    if context.model is None:
        raise ValueError(f"{who} needs the model itself (its hidden layers), not only a forward pass")
    cached = getattr(context, "layer_features", None)
    if pooling == "max" and callable(cached):
        return cached(who)
    return layer_features(
        context.model, context.dataset.x, pooling=pooling, batch_size=batch_size, device=context.device
    )
