"""What a scan returns: one record per defense and the scan as a whole (with the screen's verdict)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import Defense, class_groups
from poisonlab.inference import ForwardResult

if TYPE_CHECKING:  # the screen imports these records; only the annotation needs it back
    from poisonlab.defenses.scan.screen import ScreenVerdict

__all__ = ["MethodResult", "ScanResult"]


@dataclass(frozen=True)
class MethodResult:
    """One defense's verdict on the scanned dataset.

    ``scores`` (N,) float64, higher = more suspicious; ``flagged`` (N,) bool; ``metrics`` is
    ``None`` when the dataset has no ground-truth poison mask.
    """

    name: str
    params: dict[str, Any]
    space: str
    paper: str
    scores: np.ndarray
    flagged: np.ndarray
    details: dict[str, Any]
    seconds: float
    metrics: dict[str, float | None] | None
    defense: Defense = field(repr=False, compare=False)

    def per_class(self, dataset: Dataset) -> list[dict[str, Any]]:
        """Per class: samples, flagged, and (with a mask) poison and flagged poison counts."""
        mask = dataset.poison_mask
        rows = []
        for k, idx in enumerate(class_groups(dataset.y, dataset.num_classes)):
            row: dict[str, Any] = {
                "class": dataset.class_names[k],
                "samples": int(idx.size),
                "flagged": int(self.flagged[idx].sum()),
            }
            if mask is not None:
                row["poison"] = int(mask[idx].sum())
                row["flagged_poison"] = int((mask[idx] & self.flagged[idx]).sum())
            rows.append(row)
        return rows

    def ranking(self, top: int) -> np.ndarray:
        """Indices of the ``top`` most suspicious samples, most suspicious first."""
        return np.argsort(-self.scores, kind="stable")[:top]


@dataclass(frozen=True)
class ScanResult:
    """All methods of one scan; ``forward_seconds`` is the shared pass (None when no model ran)."""

    dataset: Dataset
    methods: list[MethodResult]
    forward_seconds: float | None
    forward: ForwardResult | None = field(default=None, repr=False)
    screen: ScreenVerdict | None = None

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise ValueError(f"method {name!r} is not part of this scan; it ran {[m.name for m in self.methods]}")
