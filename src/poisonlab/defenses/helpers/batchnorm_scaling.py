"""Amplified BatchNorm parameters: the model copies of IBD-PSC, as substitute tensors.

Hou et al., "IBD-PSC: Input-level Backdoor Detection via Parameter-oriented Scaling
Consistency", ICML 2024, arXiv:2405.09786, amplify the weight and bias of a model's last
BatchNorm layers. Rather than a deep copy per amplified model, :func:`amplified_parameters`
returns only the scaled tensors, to be substituted with :func:`torch.func.functional_call`:
the model itself is never modified, and n amplified models cost n small dictionaries.

Why several layers: scaling weight and bias of a BatchNorm by s scales its output by s. When
only positively homogeneous operations (ReLU, pooling, bias-free convolutions) separate it from
the next BatchNorm or the linear head, the amplification is a logit temperature, sharper but
with the same prediction; it is the next BatchNorm's running mean, subtracted from an amplified
input, that moves activations off their trained range. The adaptive choice of IBD-PSC therefore
counts trailing layers until the amplification changes enough benign predictions.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["amplification_schedule", "amplified_parameters", "batchnorm_layers"]


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """``(name, module)`` of every affine BatchNorm layer of ``model``, in registration order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
    ]


def amplification_schedule(start: int, n_layers: int, n_models: int, scale: float) -> list[tuple[int, float]]:
    """``(trailing BatchNorm layers, factor)`` of each amplified model, ``n_models`` of them.

    The paper's models amplify the last ``start``, ``start + 1``, ... layers by ``scale``. A
    shallow model runs out of layers first (the chapter CNN has 7); the models beyond that
    amplify every layer by ``scale ** 2``, ``scale ** 3``, ..., so that the PSC still averages
    ``n_models`` increasingly strong amplifications.
    """
    out = []
    for j in range(n_models):
        k = start + j
        out.append((min(k, n_layers), float(scale ** (1 + max(0, k - n_layers)))))
    return out


def amplified_parameters(layers: list[tuple[str, nn.Module]], factor: float) -> dict[str, torch.Tensor]:
    """``{"<layer>.weight": weight * factor, "<layer>.bias": bias * factor}`` for ``layers`` (new tensors).

    ``layers`` are ``(name, module)`` pairs of :func:`batchnorm_layers` of the model the
    dictionary is substituted into; the tensors stay on the modules' device.
    """
    out = {}
    for name, m in layers:
        out[f"{name}.weight"] = m.weight.detach() * factor
        if m.bias is not None:
            out[f"{name}.bias"] = m.bias.detach() * factor
    return out
