"""Shared pieces of every poisoning attack: the :class:`PoisonResult` value and validation helpers.

An attack in poisonlab is a small, immutable configuration object with a ``poison(clean)``
method. It never trains a model and never edits its input: it returns a new
:class:`~poisonlab.data.Dataset` whose ``poison_mask`` marks the poisoned samples, so defenses can
be scored against the ground truth (the threat model of Biggio et al., "Poisoning Attacks against
Support Vector Machines", ICML 2012, arXiv:1206.6389, and the survey of Goldblum et al., "Dataset
Security for Machine Learning: Data Poisoning, Backdoor Attacks, and Defenses", arXiv:2012.10544).

Poison marks accumulate: poisoning a dataset that already carries a ``poison_mask`` keeps the
earlier marks, so :attr:`PoisonResult.poison_indices` always equals
``np.flatnonzero(result.dataset.poison_mask)`` (all poison in the returned set, not only this
attack's).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from poisonlab.data.dataset import Dataset

__all__ = [
    "PoisonResult",
    "PoisoningAttack",
    "apply_perturbation",
    "check_class_spec",
    "check_count_fraction",
    "check_perturbation",
    "check_perturbation_output",
    "check_seed",
    "choose",
    "make_result",
    "resolve_class",
    "resolve_count",
]


@dataclass(frozen=True)
class PoisonResult:
    """What an attack returns.

    Attributes
    ----------
    dataset : Dataset
        The new training set; ``dataset.poison_mask`` marks the poison (never ``None``).
    poison_indices : frozenset of int
        Indices into ``dataset`` of the poisoned samples, equal to ``np.flatnonzero(mask)``.
    poisoned_only : Dataset
        Just the poisoned samples, in index order (for "fine-tune on the poison only").
    description : str
        One line for reports, e.g. ``"backdoor[pattern]: 4000 airplane->bird, concat"``.
    """

    dataset: Dataset
    poison_indices: frozenset[int]
    poisoned_only: Dataset
    description: str

    def __post_init__(self) -> None:
        mask = self.dataset.poison_mask
        if mask is None:
            raise ValueError("PoisonResult.dataset must carry a poison_mask, got None")
        expected = np.flatnonzero(mask)
        got = np.array(sorted(self.poison_indices), dtype=np.int64)
        if not np.array_equal(expected, got):
            raise ValueError(
                f"poison_indices must equal np.flatnonzero(dataset.poison_mask): "
                f"expected {expected.size} indices, got {got.size} (or different positions)"
            )
        if len(self.poisoned_only) != expected.size:
            raise ValueError(
                f"poisoned_only must hold the {expected.size} poisoned samples, got {len(self.poisoned_only)}"
            )
        if "\n" in self.description:
            raise ValueError("description must be one line")

    @property
    def num_poison(self) -> int:
        return len(self.poison_indices)

    @property
    def poison_rate(self) -> float:
        """Poisoned share of the returned training set."""
        return self.num_poison / len(self.dataset) if len(self.dataset) else 0.0

    def indices_array(self) -> np.ndarray:
        """The poison indices as a sorted int64 array."""
        return np.flatnonzero(self.dataset.mask_or_clean()).astype(np.int64)


class PoisoningAttack(ABC):
    """Base of the dataset-level attacks in :data:`poisonlab.attacks.ATTACKS`."""

    #: registry name, set by subclasses
    name: str = "attack"

    @abstractmethod
    def poison(self, clean: Dataset) -> PoisonResult:
        """Return a poisoned copy of ``clean`` (``clean`` itself is never modified)."""


# ---------------------------------------------------------------------------------------- helpers
def make_result(dataset: Dataset, description: str) -> PoisonResult:
    """Wrap a poisoned dataset (with ``poison_mask`` set) into a :class:`PoisonResult`."""
    mask = dataset.mask_or_clean()
    idx = np.flatnonzero(mask)
    return PoisonResult(
        dataset=dataset,
        poison_indices=frozenset(int(i) for i in idx),
        poisoned_only=dataset.subset(idx, name=f"{dataset.name}:poison-only"),
        description=description,
    )


def check_class_spec(value: object, param: str, *, allow_none: bool = False) -> None:
    """Constructor-time check that ``value`` can name a class (a str or a non-negative int)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
        expected = (
            "a class name (str), a class index (int) or None" if allow_none else "a class name or index"
        )
        raise ValueError(f"{param} must be {expected}, got {value!r} ({type(value).__name__})")
    if isinstance(value, numbers.Integral) and value < 0:
        raise ValueError(f"{param} must be a non-negative class index, got {value}")
    if isinstance(value, str) and not value:
        raise ValueError(f"{param} must be a non-empty class name, got ''")


def resolve_class(dataset: Dataset, value: str | int, param: str) -> int:
    """Resolve a class name or index against ``dataset.class_names`` with a parameter-named error."""
    try:
        return dataset.class_index(value)
    except ValueError as exc:
        raise ValueError(f"{param}: {exc}") from None


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_count_fraction(count: object, fraction: object, *, require_one: bool) -> None:
    """Validate the mutually exclusive ``count`` / ``fraction`` pair.

    ``count`` must be an int >= 1, ``fraction`` a float in (0, 1]. With ``require_one`` exactly
    one of them must be given; otherwise at most one.
    """
    if count is not None and fraction is not None:
        raise ValueError(
            f"give exactly one of count or fraction, got count={count!r} and fraction={fraction!r}"
        )
    if require_one and count is None and fraction is None:
        raise ValueError("give exactly one of count or fraction, got neither")
    if count is not None and (
        isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1
    ):
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            raise ValueError(f"fraction must be a float in (0, 1], got {fraction!r}")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def resolve_count(*, count: int | None, fraction: float | None, base: int, available: int, what: str) -> int:
    """Number of samples to poison.

    ``count`` is taken as is; ``fraction`` is of ``base`` (rounded half up). ``None`` for both means
    all ``available``. Raises if the result is 0 or exceeds ``available``.
    """
    if count is None and fraction is None:
        k = available
    elif count is not None:
        k = int(count)
    else:
        k = int(np.floor(float(fraction) * base + 0.5))  # type: ignore[arg-type]
        if k == 0:
            raise ValueError(f"fraction={fraction} of {base} samples rounds to 0 poisoned samples")
    if k == 0:
        raise ValueError(f"no samples to poison: {what} has 0 samples")
    if k > available:
        raise ValueError(f"cannot poison {k} samples: only {available} available in {what}")
    return k


def choose(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct candidates, sorted (all of them, rng untouched, when ``k`` equals their count)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if k == candidates.size:
        return np.sort(candidates)
    return np.sort(rng.choice(candidates, size=k, replace=False))


def check_perturbation_output(out: object, x: np.ndarray, name: str = "perturbation") -> np.ndarray:
    """Check that a trigger returned an array of the same shape and dtype as its input."""
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must return a numpy array, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name} must keep the shape: expected {x.shape}, got {out.shape}")
    if out.dtype != x.dtype:
        raise ValueError(f"{name} must keep the dtype: expected {x.dtype}, got {out.dtype}")
    return out


def check_perturbation(perturbation: object, param: str = "perturbation") -> None:
    """A callable, or (for ART parity) a non-empty sequence of callables applied in order."""
    if callable(perturbation):
        return
    if (
        isinstance(perturbation, Sequence)
        and not isinstance(perturbation, str)
        and len(perturbation) > 0
        and all(callable(p) for p in perturbation)
    ):
        return
    raise ValueError(
        f"{param} must be a callable or a non-empty list of callables, got {type(perturbation).__name__}"
    )


def apply_perturbation(
    perturbation: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
    x: np.ndarray,
) -> np.ndarray:
    """Apply the trigger(s) to a copy of ``x``; check shape and dtype after every step."""
    out = np.copy(x)
    steps = [perturbation] if callable(perturbation) else list(perturbation)
    for i, step in enumerate(steps):
        label = "perturbation" if len(steps) == 1 else f"perturbation[{i}]"
        out = check_perturbation_output(step(out), x, label)
    return out
