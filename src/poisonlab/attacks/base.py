"""Shared pieces of every poisoning attack: the result value, the base class, the registry, helpers.

An attack in poisonlab is a small, immutable configuration object with a ``poison(clean)``
method. It never trains a model and never edits its input: it returns a new
:class:`~poisonlab.data.Dataset` whose ``poison_mask`` marks the poisoned samples, so defenses can
be scored against the ground truth (the threat model of Biggio et al., "Poisoning Attacks against
Support Vector Machines", ICML 2012, arXiv:1206.6389, and the survey of Goldblum et al., "Dataset
Security for Machine Learning: Data Poisoning, Backdoor Attacks, and Defenses", arXiv:2012.10544).

ART-style arrays: ``attack.poison(x, y)`` (or the explicit ``attack.poison_arrays(x, y)``) takes
uint8 images and integer or one-hot labels and returns ``(x_poisoned, y_poisoned, poison_mask)``
arrays instead of a :class:`PoisonResult`; ``attack.poison(dataset)`` is unchanged.

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
from numbers import Real
from typing import Any, ClassVar

import numpy as np

from poisonlab.attacks.arrays import accepting_arrays, poison_arrays
from poisonlab.data.dataset import Dataset
from poisonlab.metrics import class_index
from poisonlab.params import POSITIVE_INT, Constraint, Interval, Satisfies, validate_params
from poisonlab.registry import Registry
from poisonlab.reprs import concise_repr

__all__ = [
    "ATTACKS",
    "CLASS",
    "COUNT",
    "FRACTION",
    "TRIGGER",
    "ClassLabel",
    "Perturbation",
    "PoisonResult",
    "PoisoningAttack",
    "apply_perturbation",
    "check_count_fraction",
    "check_perturbation_output",
    "check_source_target",
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

    def _repr_fields(self) -> dict[str, object]:
        return {
            "description": self.description,
            "samples": len(self.dataset),
            "num_poison": self.num_poison,
            "poison_rate": round(self.poison_rate, 4),
            "dataset": self.dataset.name,
        }

    def __repr__(self) -> str:
        # the dataclass default would print every poison index (thousands of them)
        return concise_repr(self, **self._repr_fields())


class ClassLabel(Constraint):
    """A class name (non-empty str) or index (int >= 0), resolved against a dataset later."""

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, str):
            return value != ""
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0

    def describe(self) -> str:
        return "a class name or index"

    def describe_miss(self, value: object) -> str | None:
        if isinstance(value, str):
            return "a non-empty class name"
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return "a non-negative class index"
        return None


def _is_trigger(value: object) -> bool:
    if callable(value):
        return True
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and all(callable(p) for p in value)
    )


#: a trigger function: a batch of images (N, H, W, C) -> a new batch of the same shape and dtype
Perturbation = Callable[[np.ndarray], np.ndarray]
#: a class name or index
CLASS = ClassLabel()
#: a trigger: ``(N, H, W, C) -> same shape and dtype``, or (for ART parity) a list applied in order
TRIGGER = Satisfies(_is_trigger, "a callable or a non-empty list of callables")
#: a poison budget: a number of samples, or a share in (0, 1]
COUNT = [None, POSITIVE_INT]
FRACTION = [None, Interval(Real, 0, 1, closed="right")]


class PoisoningAttack(ABC):
    """Base of the dataset-level attacks in :data:`ATTACKS`.

    Subclasses are frozen keyword-only dataclasses. They declare what each constructor parameter
    accepts in :attr:`parameter_constraints` (checked by ``__post_init__`` through
    :func:`poisonlab.params.validate_params`) and rules that tie parameters together in
    :meth:`_check`. The capability flags say what an attack needs, so that the CLI, configs and
    the factory (:mod:`poisonlab.attacks.factory`) ask the class instead of keeping lists of names.
    """

    #: registry name, set by subclasses
    name: ClassVar[str] = "attack"
    #: parameter -> admissible values (:mod:`poisonlab.params`); every constructor field has one
    parameter_constraints: ClassVar[dict[str, list]] = {}

    #: crafts its poisons against a surrogate ``model``
    needs_model: ClassVar[bool] = False
    #: takes the attacker's ``target`` class
    needs_target_class: ClassVar[bool] = False
    #: requires a ``source`` class (the class whose inputs should end up as the target)
    needs_source_class: ClassVar[bool] = False
    #: takes ``victims``: the test images the attacker wants misclassified
    needs_victims: ClassVar[bool] = False
    #: carries a trigger that the attacker stamps on inputs at test time
    needs_trigger: ClassVar[bool] = False
    #: every poison keeps its correct label
    clean_label: ClassVar[bool] = False
    #: optimisation-based: returns a :class:`~poisonlab.attacks.crafting.CraftedPoisonResult`
    crafted: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every ``poison`` a subclass defines also takes ART's ``poison(x, y)`` on arrays.
        own = cls.__dict__.get("poison")
        if own is not None and not getattr(own, "__isabstractmethod__", False):
            cls.poison = accepting_arrays(own)  # type: ignore[method-assign]

    def __post_init__(self) -> None:
        validate_params(vars(self), self.parameter_constraints)
        self._check()

    def _check(self) -> None:  # noqa: B027 - a hook: most attacks have no cross-parameter rule
        """Cross-parameter rules (the single-parameter ones are in :attr:`parameter_constraints`)."""

    @abstractmethod
    def poison(self, clean: Dataset) -> PoisonResult:
        """Return a poisoned copy of ``clean`` (``clean`` itself is never modified).

        Called as ``poison(x, y)`` with arrays it is :meth:`poison_arrays` (ART's interface).
        """

    def poison_arrays(
        self, x: np.ndarray, y: np.ndarray, *, class_names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Poison arrays, the way ART's attacks are called: ``(x, y) -> (x', y', poison_mask)``.

        Parameters
        ----------
        x : np.ndarray
            uint8 images (N, H, W, C) with C in {1, 3}. Not modified.
        y : np.ndarray
            Labels: class indices (N,) or one-hot rows (N, K).
        class_names : sequence of str, optional
            The classes, to resolve class names the attack was given (``target="bird"``). Default
            ``"0"`` ... ``"K-1"``, with K the one-hot width or ``max(y) + 1``: then the attack's
            classes must be indices (or digit strings), and a target absent from ``y`` needs
            ``class_names`` (or one-hot labels) to be in range.

        Returns
        -------
        x_poisoned : np.ndarray
            uint8 (M, H, W, C). M = N for attacks that poison in place; attacks that append
            their poison (``backdoor`` with ``integration="concat"``, ``mislabel``) return the N
            inputs first, in order, then the poison.
        y_poisoned : np.ndarray
            (M,) int64 indices, or (M, K) one-hot in ``y``'s dtype when ``y`` was one-hot.
        poison_mask : np.ndarray
            (M,) bool, True for the poisoned rows.
        """
        return poison_arrays(self, x, y, class_names=class_names)


#: attack name -> class; each attack registers itself with ``@ATTACKS.register``
ATTACKS: Registry[type[PoisoningAttack]] = Registry("attack")


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


def resolve_class(dataset: Dataset, value: str | int, param: str) -> int:
    """Resolve a class name or index against ``dataset.class_names`` with a parameter-named error.

    The same rule as the metrics' (:func:`poisonlab.metrics.class_index`), so every class an
    attack accepts is accepted by ``attack_success_rate`` too.
    """
    return class_index(value, dataset.class_names, param=param)


def check_count_fraction(count: object, fraction: object, *, require_one: bool) -> None:
    """The ``count`` / ``fraction`` pair is exclusive; with ``require_one`` exactly one is needed.

    Their values are checked by the :data:`COUNT` and :data:`FRACTION` constraints.
    """
    if count is not None and fraction is not None:
        raise ValueError(
            f"give exactly one of count or fraction, got count={count!r} and fraction={fraction!r}"
        )
    if require_one and count is None and fraction is None:
        raise ValueError("give exactly one of count or fraction, got neither")


def check_source_target(source: object, target: object) -> None:
    """A source class equal to the target makes no attack (checked again on the data's indices)."""
    if source is not None and source == target:
        raise ValueError(f"source and target must differ, got both {source!r}")


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
        given = f"count={count}" if count is not None else f"fraction={fraction}"  # the budget asked for
        raise ValueError(f"{given}: cannot poison {k} samples: only {available} available in {what}")
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
