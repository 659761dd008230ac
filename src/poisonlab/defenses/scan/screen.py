"""The default screen: the recommended detectors on one forward pass, one verdict without ground truth.

No single detector holds everywhere (issue 11): activation clustering and spectral signatures
miss poison that outnumbers its class and label flips of a trained model, confident learning
misses backdoors, SPECTRE and SCAn need the poison to be a minority of its class, FLARE needs the
poison to form its own cluster. The screen runs a frozen set of them on one shared
:class:`~poisonlab.defenses.context.ScanContext` and combines their flags by agreement:

* every detector casts one vote for each sample it flags;
* a sample is flagged by the screen when at least ``min_votes`` detectors flag it (2 by
  default; when fewer detectors ran than that, all of them must agree);
* or when one of the *anchored* detectors flags it (:data:`ANCHORED_METHODS`: today the
  trusted-anchored k-NN, whose cut-off is calibrated on the trusted clean set's own scores, so
  its flags carry a false-positive rate known before any vote). They run only when the scan has
  a trusted set (:func:`screen_methods`);
* when anchored detectors ran, an agreement flag stands only on evidence: the sample must also
  be farther than typical from the trusted samples of its label (anchored score above the
  trusted median by :data:`TYPICAL_SPREADS` robust standard deviations). Clustering detectors
  flag the *smaller* group of a class, which is the clean part when poison outnumbers it; the
  veto keeps them from quarantining a class's clean samples by group size alone.

Agreement needs no ground truth and no per-attack tuning: a clean sample that one detector
mistrusts for its own reasons (an odd digit, a rare pose) is not enough, and poison that two
independent views of the data single out is. The clustering detectors need the poison to be a
minority of its class; the anchored detector does not (it compares every sample with trusted
samples of its label), which is why its flag alone is enough: on the development grid it is what
catches all-to-one poison that outnumbers its class (docs/results/detection.md). The screen's
score is the mean over detectors of each detector's score as a rank percentile in [0, 1] (so
detectors with incomparable scales count alike), plus the share of detectors flagging the
sample, plus the anchored detectors' mean percentile and flag, so flagged samples rank first.

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

__all__ = [
    "ANCHORED_METHODS",
    "MIN_VOTES",
    "SCREEN_METHODS",
    "TYPICAL_SPREADS",
    "ScreenVerdict",
    "combine",
    "screen_methods",
]

#: The recommended detectors, frozen (see docs/detection-defaults.md for how they were chosen).
SCREEN_METHODS: tuple[str, ...] = (
    "spectre",
    "scan_lrt",
    "activation_clustering",
    "spectral_signatures",
    "flare",
    "deep_knn",
    "confident_learning",
)
#: Detectors calibrated on the trusted set: one flag of theirs is enough (run when a trusted set is given).
ANCHORED_METHODS: tuple[str, ...] = ("anchored_knn",)
#: Detectors that must agree on a sample.
MIN_VOTES = 2
#: An agreement flag needs an anchored score this many robust SDs above the trusted median.
TYPICAL_SPREADS = 2.0


def screen_methods(has_trusted: bool) -> tuple[str, ...]:
    """The screen's detectors: :data:`SCREEN_METHODS`, plus :data:`ANCHORED_METHODS` with a trusted set."""
    return SCREEN_METHODS + (ANCHORED_METHODS if has_trusted else ())


@dataclass(frozen=True)
class ScreenVerdict:
    """The screen's combined decision over one scanned dataset.

    ``flagged`` (N,) bool, ``scores`` (N,) float64 in [0, 4] (higher = more suspicious), ``votes``
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
            "rule": _rule(self.min_votes, self.methods),
            "min_votes": self.min_votes,
            "flagged": int(self.flagged.sum()),
            "classes": self.classes,
            "metrics": self.metrics,
        }


def _rule(min_votes: int, methods: tuple[str, ...]) -> str:
    """The decision rule in words, naming the anchored detectors that took part."""
    rule = f"a sample is flagged when at least {min_votes} of the detectors flag it"
    anchored = [m for m in methods if m in ANCHORED_METHODS]
    if not anchored:
        return rule
    return (
        f"{rule} and {' or '.join(anchored)} places it more than {TYPICAL_SPREADS:g} robust SDs beyond "
        f"the typical trusted sample, or when {' or '.join(anchored)} flags it"
    )


def _atypical(anchored: Sequence[MethodResult]) -> np.ndarray:
    """Samples that some anchored detector places beyond the typical trusted sample (see the module
    docstring); every sample when a detector's reference is unknown (no veto without evidence)."""
    out = np.zeros(anchored[0].scores.shape, dtype=bool)
    for m in anchored:
        centre, spread = m.details.get("reference_centre"), m.details.get("reference_spread")
        if centre is None or spread is None:
            return np.ones_like(out)
        out |= m.scores > centre + TYPICAL_SPREADS * spread
    return out


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
    anchored = [m for m in methods if m.name in ANCHORED_METHODS]
    if anchored:  # their calibrated flags decide alone; their ranking leads the score
        alone = np.any([m.flagged for m in anchored], axis=0)
        flagged = (flagged & _atypical(anchored)) | alone
        scores = scores + np.mean([_rank_percentiles(m.scores) for m in anchored], axis=0) + alone
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
