"""Architectures by name: the chapter CNN, PreAct ResNet-18 and the airbench-style network."""

from __future__ import annotations

from collections.abc import Callable

from poisonlab.models.airbench import AirbenchNet
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.preact_resnet import PreActResNet18
from poisonlab.models.simple_cnn import SimpleCifarCNN

ARCHITECTURES: dict[str, Callable[..., PoisonlabModel]] = {
    SimpleCifarCNN.arch: SimpleCifarCNN,
    PreActResNet18.arch: PreActResNet18,
    AirbenchNet.arch: AirbenchNet,
}


def build_model(spec: dict) -> PoisonlabModel:
    """Build an untrained model from a spec (as written by :meth:`PoisonlabModel.spec`).

    Parameters
    ----------
    spec : dict
        ``arch`` (one of :data:`ARCHITECTURES`), ``input_shape`` (H, W, C), ``num_classes`` and
        the architecture's optional keyword arguments.
    """
    spec = dict(spec)
    arch = spec.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if "input_shape" not in spec or "num_classes" not in spec:
        raise ValueError("a model spec needs 'input_shape' (H, W, C) and 'num_classes'")
    for key in ("input_shape", "mean", "std", "dropout", "widths"):
        if spec.get(key) is not None:
            spec[key] = tuple(spec[key])
    try:
        return ARCHITECTURES[arch](**spec)
    except TypeError as exc:  # unknown keyword in a hand-written spec
        raise ValueError(f"invalid parameters for {arch}: {exc}") from exc
