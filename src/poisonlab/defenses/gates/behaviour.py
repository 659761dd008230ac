"""Behaviour shift: what the candidate does differently from the model it would replace.

Accuracy hides a targeted attack: a label flip of one class, or a backdoor that leaks into clean
images of its source class, moves a few dozen predictions of *one* class to *one* other class and
barely changes the total. Comparing the candidate with the serving model it was fine-tuned from,
on the same trusted images, shows exactly those moves. With ``R[c, k]`` and ``C[c, k]`` the shares
of the class-``c`` images that the reference and the candidate predict ``k``:

* a *confusion shift* ``(c -> k)`` is ``C[c, k] - R[c, k]`` for ``k != c``: the candidate sends
  more of class ``c`` to ``k`` than the serving model did;
* a *recall drop* of class ``c`` is ``R[c, c] - C[c, c]``.

The gate fails when a shift or a drop reaches ``max_shift``. A fine-tune on clean data moves a
few images here and there (about 1/36 of a digits test class each), never a block of one class to
one target, so the rule needs no per-attack tuning. Classes with fewer than
``min_class_samples`` images are not judged.

This is the regression comparison practised before promoting a model (a "champion/challenger"
check on a trusted set), applied per class pair, the unit a targeted poisoning attack acts on
(Biggio, Nelson and Laskov, "Poisoning Attacks against Support Vector Machines", ICML 2012, on
targeted error; Gu, Dolan-Gavitt and Garg, "BadNets", arXiv:1708.06733, 2017, on the source ->
target behaviour of backdoors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_fraction, check_positive_int
from poisonlab.inference import check_images, predict
from poisonlab.metrics import confusion_matrix
from poisonlab.models.base import PoisonlabModel

__all__ = ["BehaviourReport", "behaviour_shift"]


@dataclass(frozen=True)
class BehaviourReport:
    """Outcome of :func:`behaviour_shift`: ``shifts`` lists every pair at or above ``max_shift``
    (``{"source", "target", "candidate", "reference", "shift"}``; ``target == source`` is a recall
    drop), ``largest`` the single largest change whether flagged or not."""

    passed: bool
    max_shift: float
    n_samples: int
    shifts: list[dict[str, Any]]
    largest: dict[str, Any] | None
    candidate_accuracy: float
    reference_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def _rates(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    counts = np.maximum(np.bincount(y, minlength=k), 1)
    return confusion_matrix(y, pred, k) / counts[:, None]


def _changes(cand: np.ndarray, ref: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """(K, K) change per pair: off-diagonal confusion increases, diagonal recall drops; -inf unjudged."""
    change = cand - ref
    np.fill_diagonal(change, np.diag(ref) - np.diag(cand))
    change[~judged] = -np.inf
    return change


def _row(names: tuple[str, ...], c: int, k: int, cand: np.ndarray, ref: np.ndarray, change: float) -> dict:
    return {
        "source": names[c],
        "target": names[k],
        "candidate": round(float(cand[c, k]), 4),
        "reference": round(float(ref[c, k]), 4),
        "shift": round(float(change), 4),
    }


def behaviour_shift(
    candidate: PoisonlabModel,
    reference: PoisonlabModel,
    clean: Dataset,
    *,
    max_shift: float = 0.2,
    min_class_samples: int = 5,
    device: str = "cpu",
) -> BehaviourReport:
    """Compare per-class confusions of ``candidate`` and ``reference`` on trusted ``clean`` images.

    Parameters
    ----------
    candidate, reference : PoisonlabModel
        The model under test and the trusted model it would replace.
    clean : Dataset
        Trusted clean images with their true labels (the gate set).
    max_shift : float
        Share of a class, in (0, 1], that may move to one other class (or out of its own).
    min_class_samples : int
        Classes with fewer images are not judged.
    device : {"cpu", "cuda", "auto"}

    Returns
    -------
    BehaviourReport

    Raises
    ------
    ValueError
        For an empty set or models that do not fit it.
    """
    max_shift = check_fraction(max_shift, "max_shift")
    min_n = check_positive_int(min_class_samples, "min_class_samples")
    if not isinstance(clean, Dataset) or len(clean) == 0:
        raise ValueError("behaviour_shift needs a non-empty poisonlab Dataset")
    k = clean.num_classes
    for what, model in (("candidate", candidate), ("reference", reference)):
        if not isinstance(model, PoisonlabModel) or model.num_classes != k:
            raise ValueError(f"{what} must be a PoisonlabModel with {k} classes")
        check_images(model, clean.x)
    pc, pr = predict(candidate, clean.x, device=device), predict(reference, clean.x, device=device)
    cand, ref = _rates(clean.y, pc, k), _rates(clean.y, pr, k)
    judged = np.bincount(clean.y, minlength=k) >= min_n
    change = _changes(cand, ref, judged)
    names = clean.class_names
    flagged = [
        _row(names, c, t, cand, ref, change[c, t])
        for c, t in zip(*np.nonzero(change >= max_shift), strict=True)
    ]
    largest = None
    if np.isfinite(change).any():
        c, t = np.unravel_index(int(np.argmax(change)), change.shape)
        largest = _row(names, int(c), int(t), cand, ref, change[c, t])
    return BehaviourReport(
        passed=not flagged,
        max_shift=max_shift,
        n_samples=len(clean),
        shifts=sorted(flagged, key=lambda r: -r["shift"]),
        largest=largest,
        candidate_accuracy=round(float(np.mean(pc == clean.y)), 4),
        reference_accuracy=round(float(np.mean(pr == clean.y)), 4),
    )
