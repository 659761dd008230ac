"""Input checks shared by the gates that compare a candidate model with an optional reference."""

from __future__ import annotations

from poisonlab.data.dataset import Dataset
from poisonlab.inference import check_images
from poisonlab.models.base import PoisonlabModel


def check_models(model: object, reference: object, clean: Dataset) -> None:
    """Raise ValueError unless ``model`` (and ``reference``, when not None) fit ``clean``.

    Each must be a :class:`~poisonlab.models.base.PoisonlabModel` with ``clean``'s number of classes
    whose input shape is that of ``clean``'s images (uint8 (N, H, W, C)); the messages name which
    of the two does not fit. ``clean`` itself is the caller's to check (each gate needs more or
    fewer images).
    """
    for what, m in (("model", model), ("reference", reference)):
        if m is None and what == "reference":
            continue
        if not isinstance(m, PoisonlabModel):
            raise ValueError(f"{what} must be a PoisonlabModel, got {type(m).__name__}")
        if m.num_classes != clean.num_classes:
            raise ValueError(f"{what} has {m.num_classes} classes, the clean set has {clean.num_classes}")
        check_images(m, clean.x)
