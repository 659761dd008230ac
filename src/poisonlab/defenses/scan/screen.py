"""The default screen: the recommended detectors on one forward pass, one verdict without ground truth.

No single detector holds everywhere (issue 11): activation clustering and spectral signatures
miss poison that outnumbers its class and label flips of a trained model, confident learning
misses backdoors, SPECTRE and SCAn need the poison to be a minority of its class, FLARE needs the
poison to form its own cluster. The screen runs a frozen set of them on one shared
:class:`~poisonlab.defenses.context.ScanContext` and combines their flags by agreement:

* every detector casts one vote for each sample it flags;
* a sample is flagged by the screen when at least ``min_votes`` detectors flag it (2 by
  default; when fewer detectors ran than that, all of them must agree).

Agreement needs no ground truth and no per-attack tuning: a clean sample that one detector
mistrusts for its own reasons (an odd digit, a rare pose) is not enough, and poison that two
independent views of the data single out is. The screen's score is the mean over detectors of
each detector's score as a rank percentile in [0, 1] (so detectors with incomparable scales
count alike), plus the share of detectors flagging the sample, so flagged samples rank first.

The verdict records, per class, which detectors declared the class poisoned (those that decide
per class report ``poisoned_classes``), how many samples each flagged there and how many the
screen flagged: the ``screen`` entry of ``scan.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import class_groups
from poisonlab.defenses.scan.records import MethodResult
from poisonlab.metrics import detection_scores

__all__ = ["MIN_VOTES", "SCREEN_METHODS", "ScreenVerdict", "combine"]

#: The recommended detectors, frozen (see docs/results/detection.md for how they were chosen).
SCREEN_METHODS: tuple[str, ...] = (
    "spectre",
    "scan_lrt",
    "activation_clustering",
    "spectral_signatures",
    "flare",
    "deep_knn",
    "confident_learning",
)
#: Detectors that must agree on a sample.
MIN_VOTES = 2


@dataclass(frozen=True)
class ScreenVerdict:
    """The screen's combined decision over one scanned dataset.

    ``flagged`` (N,) bool, ``scores`` (N,) float64 in [0, 2] (higher = more suspicious), ``votes``
    (N,) int (detectors flagging each sample), ``methods`` the detectors combined, ``classes``
    the per-class account, ``metrics`` detection figures when the dataset has a poison mask.
    """

    flagged: np.ndarray
    scores: np.ndarray
    votes: np.ndarray
    methods: tuple[str, ...]
    min_votes: int
    classes: list[dict[str, Any]]
    metrics: dict[str, float | None] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-sample arrays: those go to ``flags.npz``)."""
        return {
            "methods": list(self.methods),
            "rule": f"a sample is flagged when at least {self.min_votes} of the detectors flag it",
            "min_votes": self.min_votes,
            "flagged": int(self.flagged.sum()),
            "classes": self.classes,
            "metrics": self.metrics,
        }


def _rank_percentiles(scores: np.ndarray) -> np.ndarray:
    """Scores as average-rank percentiles in [0, 1] (ties share a rank; constant scores give 0.5)."""
    if scores.size < 2 or np.all(scores == scores[0]):
        return np.full(scores.shape, 0.5)
    return (rankdata(scores, method="average") - 1.0) / (scores.size - 1.0)


def _class_account(
    methods: Sequence[MethodResult], dataset: Dataset, flagged: np.ndarray
) -> list[dict[str, Any]]:
    """Per class: who declared it poisoned, each detector's flags in it, the screen's flags."""
    rows = []
    for k, idx in enumerate(class_groups(dataset.y, dataset.num_classes)):
        name = dataset.class_names[k]
        declared = [m.name for m in methods if name in (m.details.get("poisoned_classes") or ())]
        per_method = {m.name: int(m.flagged[idx].sum()) for m in methods if m.flagged[idx].any()}
        rows.append(
            {
                "class": name,
                "samples": int(idx.size),
                "screen_flagged": int(flagged[idx].sum()),
                "declared_poisoned_by": declared,
                "flagged_by": per_method,
            }
        )
    return rows


def combine(
    methods: Sequence[MethodResult], dataset: Dataset, *, min_votes: int = MIN_VOTES
) -> ScreenVerdict:
    """Combine the detectors of one scan into the screen's verdict (see the module docstring).

    Parameters
    ----------
    methods : sequence of MethodResult
        The fitted detectors of one scan over ``dataset`` (at least one).
    dataset : Dataset
        The scanned dataset; its ``poison_mask``, when known, only feeds ``metrics``.
    min_votes : int
        Detectors that must flag a sample; capped at the number of detectors.

    Raises
    ------
    ValueError
        Without methods, for ``min_votes < 1`` or when a method does not cover the dataset.
    """
    if not methods:
        raise ValueError("the screen needs at least one detector result")
    if isinstance(min_votes, bool) or not isinstance(min_votes, int) or min_votes < 1:
        raise ValueError(f"min_votes must be an integer >= 1, got {min_votes!r}")
    n = len(dataset)
    for m in methods:
        if m.flagged.shape != (n,) or m.scores.shape != (n,):
            raise ValueError(f"method {m.name!r} covers {m.flagged.shape[0]} samples, the dataset has {n}")
    needed = min(min_votes, len(methods))
    votes = np.sum([m.flagged for m in methods], axis=0).astype(np.int64)
    flagged = votes >= needed
    scores = np.mean([_rank_percentiles(m.scores) for m in methods], axis=0) + votes / len(methods)
    mask = dataset.poison_mask
    return ScreenVerdict(
        flagged=flagged,
        scores=scores,
        votes=votes,
        methods=tuple(m.name for m in methods),
        min_votes=needed,
        classes=_class_account(methods, dataset, flagged),
        metrics=None if mask is None else detection_scores(mask, flagged, scores),
    )
