"""Label-flipping attacks: change the labels of existing training samples, keep their pixels.

* :class:`LabelFlip` - targeted: relabel some samples of a ``source`` class as ``target``.
* :class:`RandomLabelFlip` - untargeted: relabel a random share of all samples to a uniformly
  random *other* class (random label noise).

Label flipping is the classic poisoning baseline of Biggio et al., "Support Vector Machines
Under Adversarial Label Noise", ACML 2011, and Xiao et al., "Adversarial Label Flips Attack on
Support Vector Machines", ECAI 2012. Labels are flipped in place, so the poisoned training set has
the clean set's length and ``poison_indices`` are the flipped positions. Source tags are left as
they were: the pixels still come from the same place; ``poison_mask`` records the flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from poisonlab.attacks.base import (
    ATTACKS,
    CLASS,
    COUNT,
    FRACTION,
    PoisoningAttack,
    PoisonResult,
    check_count_fraction,
    check_source_target,
    choose,
    make_result,
    resolve_class,
    resolve_count,
)
from poisonlab.data.dataset import Dataset
from poisonlab.params import SEED, Satisfies

__all__ = ["LabelFlip", "RandomLabelFlip"]


def _flipped(clean: Dataset, idx: np.ndarray, new_labels: np.ndarray, name: str) -> Dataset:
    y = clean.y.copy()
    y[idx] = new_labels
    mask = clean.mask_or_clean().copy()
    mask[idx] = True
    return clean.replace(y=y, poison_mask=mask, name=name)


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class LabelFlip(PoisoningAttack):
    """Targeted label flip: ``source`` -> ``target`` on a count or a fraction of the source class.

    Parameters
    ----------
    source, target : str or int
        Class names or indices (resolved against the clean set); they must differ.
    count : int, optional
        Number of source-class samples to flip (>= 1, at most the class size).
    fraction : float, optional
        Share of the source class to flip, in (0, 1] (rounded half up; must give >= 1 sample).
        Exactly one of ``count`` / ``fraction`` is required.
    seed : int
        Seed of the numpy ``default_rng`` that picks the samples.
    """

    name = "label_flip"
    needs_source_class = True
    needs_target_class = True
    parameter_constraints = {
        "source": [CLASS],
        "target": [CLASS],
        "count": COUNT,
        "fraction": FRACTION,
        "seed": [SEED],
    }

    source: str | int
    target: str | int
    count: int | None = None
    fraction: float | None = None
    seed: int = 0

    def _check(self) -> None:
        check_source_target(self.source, self.target)
        check_count_fraction(self.count, self.fraction, require_one=True)

    def poison(self, clean: Dataset) -> PoisonResult:
        src = resolve_class(clean, self.source, "source")
        tgt = resolve_class(clean, self.target, "target")
        if src == tgt:
            raise ValueError(
                f"source and target must be different classes, got both {clean.class_names[src]!r}"
            )
        candidates = np.flatnonzero(clean.y == src)
        src_name, tgt_name = clean.class_names[src], clean.class_names[tgt]
        k = resolve_count(
            count=self.count,
            fraction=self.fraction,
            base=candidates.size,
            available=candidates.size,
            what=f"source class {src_name!r}",
        )
        idx = choose(np.random.default_rng(self.seed), candidates, k)
        out = _flipped(clean, idx, np.full(k, tgt), f"{clean.name}+label_flip[{src_name}->{tgt_name}]")
        return make_result(out, f"label_flip: {k} {src_name}->{tgt_name}, in place")


def _is_class_list(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and all(map(CLASS.is_satisfied_by, value))
    )


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class RandomLabelFlip(PoisoningAttack):
    """Untargeted label flip: a random ``fraction`` of samples get a uniformly random other label.

    Parameters
    ----------
    fraction : float
        Share of the eligible samples to flip, in (0, 1] (rounded half up; must give >= 1 sample).
    seed : int
        Seed of the numpy ``default_rng`` that picks the samples and their new labels.
    classes : sequence of str or int, optional
        Restrict the attack to these classes (at least two): only their samples are eligible and
        new labels are drawn among them. ``None`` means every class.
    """

    name = "random_label_flip"
    parameter_constraints = {
        "fraction": FRACTION[1:],  # required here: no count alternative
        "seed": [SEED],
        "classes": [None, Satisfies(_is_class_list, "a list of class names or indices")],
    }

    fraction: float
    seed: int = 0
    classes: Sequence[str | int] | None = None

    def _check(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
            if len(set(self.classes)) < 2:
                raise ValueError(f"classes must name at least 2 distinct classes, got {list(self.classes)}")

    def poison(self, clean: Dataset) -> PoisonResult:
        if self.classes is None:
            pool = np.arange(clean.num_classes)
        else:
            pool = np.unique([resolve_class(clean, c, "classes") for c in self.classes])
        if pool.size < 2:
            raise ValueError(f"need at least 2 classes to flip between, got {pool.size}")
        candidates = np.flatnonzero(np.isin(clean.y, pool))
        k = resolve_count(
            count=None,
            fraction=self.fraction,
            base=candidates.size,
            available=candidates.size,
            what="the eligible classes",
        )
        rng = np.random.default_rng(self.seed)
        idx = choose(rng, candidates, k)
        # Uniform over the other pool classes: draw a position among m-1 and skip the true one.
        pos = np.searchsorted(pool, clean.y[idx])
        r = rng.integers(0, pool.size - 1, size=k)
        new = pool[r + (r >= pos)]
        scope = "all classes" if self.classes is None else f"{pool.size} classes"
        out = _flipped(clean, idx, new, f"{clean.name}+random_label_flip[{self.fraction}]")
        return make_result(out, f"random_label_flip: {k} samples ({self.fraction:g} of {scope}), in place")
