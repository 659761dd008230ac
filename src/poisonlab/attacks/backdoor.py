"""Backdoor (trojan) poisoning: stamp a trigger on source-class images and relabel them.

Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", arXiv:1708.06733 (2017): a model trained on a set where some images carry a small
trigger (a pixel, a pattern, a pasted image) and the attacker's label learns to behave normally on
clean inputs but to output the attacker's class whenever the trigger is present. Chen et al.,
"Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning", arXiv:1712.05526,
introduced the blended trigger also available in :mod:`poisonlab.triggers`.

Three pieces:

* :class:`BackdoorAttack` - array level, mirrors ``art.attacks.poisoning.PoisoningAttackBackdoor``
  (``poison(x, y, broadcast=False) -> (x_poisoned, y_poisoned)``).
* :class:`BackdoorPoisoning` - dataset level (a :data:`~poisonlab.attacks.ATTACKS` entry): picks
  source-class training samples, applies the trigger, relabels them as the target and either
  appends them (the chapter's way) or replaces the originals.
* :func:`apply_trigger` - a triggered *test* set with the true labels, for attack-success-rate
  measurement (:func:`poisonlab.metrics.attack_success_rate`).

A trigger ("perturbation") is any callable taking a batch of images (N, H, W, C) and returning a
new batch of the same shape and dtype, e.g. ``poisonlab.triggers.get_trigger("pattern")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from poisonlab.attacks.base import (
    ATTACKS,
    CLASS,
    COUNT,
    FRACTION,
    TRIGGER,
    Perturbation,
    PoisoningAttack,
    PoisonResult,
    apply_perturbation,
    check_count_fraction,
    check_source_target,
    choose,
    make_result,
    resolve_class,
    resolve_count,
)
from poisonlab.data.dataset import Dataset
from poisonlab.params import NON_EMPTY_STR, SEED, InstanceOf, Options, check_param

__all__ = ["BackdoorAttack", "BackdoorPoisoning", "apply_trigger"]


class BackdoorAttack:
    """Array-level backdoor poisoning with the semantics of ART's ``PoisoningAttackBackdoor``.

    Parameters
    ----------
    perturbation : callable or list of callables
        Trigger(s) applied, in order, to a copy of the input batch. Each must return an array of
        the input's shape and dtype.
    """

    def __init__(self, perturbation: Perturbation | Sequence[Perturbation]) -> None:
        self.perturbation = check_param("perturbation", perturbation, TRIGGER)

    def __repr__(self) -> str:
        return f"BackdoorAttack(perturbation={self.perturbation!r})"

    def poison(
        self, x: np.ndarray, y: np.ndarray | int | None = None, broadcast: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply the trigger to ``x`` and return ``(x_poisoned, y_poisoned)``.

        Parameters
        ----------
        x : np.ndarray
            Images, (N, H, W, C) (or any (N, ...) the trigger accepts), uint8 or float; N >= 1.
            Not modified.
        y : np.ndarray or int
            The poison labels, returned in the form given: one-hot ``(N, K)`` or class indices
            ``(N,)``. With ``broadcast=True`` a single target - a one-hot vector ``(K,)`` (as in
            ART), giving ``(N, K)``, or a class index, giving ``(N,)``.
        broadcast : bool
            Repeat a single target label for every sample.

        Returns
        -------
        tuple of np.ndarray
            The triggered copy of ``x`` (same shape and dtype) and a fresh (writeable) label array.
        """
        if y is None:
            raise ValueError("target labels y must be provided for a backdoor attack, got None")
        if not isinstance(x, np.ndarray):
            raise ValueError(f"x must be a numpy array, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"x must be a batch of images (N, H, W, C), got shape {x.shape}")
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"x must have dtype uint8 or a float dtype, got {x.dtype}")
        n = x.shape[0]
        if n == 0:
            raise ValueError("x must hold at least one sample to poison, got 0")
        y_arr = np.asarray(y)
        if broadcast:
            if y_arr.ndim == 0:
                y_attack = np.full(n, y_arr, dtype=y_arr.dtype)
            elif y_arr.ndim == 1:
                y_attack = np.broadcast_to(y_arr, (n, y_arr.shape[0])).copy()
            else:
                raise ValueError(
                    f"with broadcast=True y must be one target: a class index or a one-hot vector (K,), "
                    f"got shape {y_arr.shape}"
                )
        else:
            if y_arr.ndim not in (1, 2) or y_arr.shape[0] != n:
                raise ValueError(
                    f"y must have shape ({n},) or ({n}, K) to match x (or pass broadcast=True for "
                    f"a single target), got shape {y_arr.shape}"
                )
            y_attack = np.array(y_arr, copy=True)
        return apply_perturbation(self.perturbation, x), y_attack


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class BackdoorPoisoning(PoisoningAttack):
    """Dataset-level backdoor poisoning (BadNets, Gu et al. 2017, arXiv:1708.06733).

    Selects training samples of the ``source`` class, stamps the trigger on them, relabels them
    as ``target`` and integrates them into the training set.

    The chapter's lab poisons *all* 4000 training airplanes (about 10% of its 40000-image
    training split) with ``source="airplane", target="bird"`` and concatenates them to the clean
    set, keeping the clean originals. Note the chapter notebook's bug: its ``poison_dataset``
    helper always applied the single-pixel backdoor whatever backdoor was passed to it, so its
    "pattern" and "image insert" runs were in fact single-pixel runs. This class applies the
    perturbation it is given.

    Parameters
    ----------
    perturbation : callable or list of callables
        The trigger, (N, H, W, C) uint8 -> same shape uint8 (e.g. from
        ``poisonlab.triggers.get_trigger``). Checked on use.
    trigger_name : str
        Name used in source tags (``"backdoor:<trigger_name>"``) and the description.
    source : str, int or None
        Class whose samples get the trigger; ``None`` means all-to-one (every non-target class).
    target : str or int
        The attacker's label.
    count : int, optional
        Number of samples to poison (at most the number of candidates).
    fraction : float, optional
        Share to poison, in (0, 1]: of the source class (``fraction_of="source"``) or of the whole
        training set (``fraction_of="train"``; must not exceed the candidates). With neither
        ``count`` nor ``fraction`` every candidate is poisoned.
    fraction_of : {"source", "train"}
        What ``fraction`` is a share of.
    integration : {"concat", "replace"}
        ``"concat"`` appends the triggered copies after the clean set (originals stay);
        ``"replace"`` overwrites the originals in place (same length as the clean set).
    seed : int
        Seed of the numpy ``default_rng`` that picks the samples.
    """

    name = "backdoor"
    needs_target_class = True
    needs_trigger = True
    parameter_constraints = {
        "perturbation": [TRIGGER],
        "trigger_name": [NON_EMPTY_STR],
        "source": [None, CLASS],  # None: all-to-one
        "target": [CLASS],
        "count": COUNT,
        "fraction": FRACTION,
        "fraction_of": [Options("source", "train")],
        "integration": [Options("concat", "replace")],
        "seed": [SEED],
    }

    perturbation: Perturbation | Sequence[Perturbation]
    trigger_name: str = "custom"
    source: str | int | None
    target: str | int
    count: int | None = None
    fraction: float | None = None
    fraction_of: Literal["source", "train"] = "source"
    integration: Literal["concat", "replace"] = "concat"
    seed: int = 0

    def _check(self) -> None:
        check_source_target(self.source, self.target)
        check_count_fraction(self.count, self.fraction, require_one=False)
        if self.fraction_of == "train" and self.fraction is None:
            raise ValueError("fraction_of='train' needs fraction, got fraction=None")

    @property
    def backdoor(self) -> BackdoorAttack:
        """The array-level attack with this trigger."""
        return BackdoorAttack(self.perturbation)

    def select(self, clean: Dataset) -> np.ndarray:
        """Sorted indices into ``clean`` of the samples this attack would poison."""
        tgt = resolve_class(clean, self.target, "target")
        if self.source is None:
            candidates = np.flatnonzero(clean.y != tgt)
            what = f"non-target classes (all but {clean.class_names[tgt]!r})"
        else:
            src = resolve_class(clean, self.source, "source")
            if src == tgt:
                raise ValueError(
                    f"source and target must be different classes, got both {clean.class_names[src]!r}"
                )
            candidates = np.flatnonzero(clean.y == src)
            what = f"source class {clean.class_names[src]!r}"
        base = len(clean) if self.fraction_of == "train" else candidates.size
        k = resolve_count(
            count=self.count, fraction=self.fraction, base=base, available=candidates.size, what=what
        )
        return choose(np.random.default_rng(self.seed), candidates, k)

    def poison_dataset(self, clean: Dataset) -> PoisonResult:
        """The poisoned training set (see the class docstring); ``clean`` is not modified."""
        tgt = resolve_class(clean, self.target, "target")
        idx = self.select(clean)
        k = idx.size
        x_p = apply_perturbation(self.perturbation, clean.x[idx])
        tag = f"backdoor:{self.trigger_name}"
        src_name = (
            "all" if self.source is None else clean.class_names[resolve_class(clean, self.source, "source")]
        )
        tgt_name = clean.class_names[tgt]
        name = f"{clean.name}+backdoor[{self.trigger_name}]"
        if self.integration == "concat":
            poison = Dataset(
                x=x_p,
                y=np.full(k, tgt, dtype=np.int64),
                class_names=clean.class_names,
                source=tag,
                name=tag,
                poison_mask=np.ones(k, dtype=bool),
            )
            out = clean.concat(poison, name=name)
        else:
            x = clean.x.copy()
            x[idx] = x_p
            y = clean.y.copy()
            y[idx] = tgt
            source = clean.source.copy()
            source[idx] = tag
            mask = clean.mask_or_clean().copy()
            mask[idx] = True
            out = clean.replace(x=x, y=y, source=source, poison_mask=mask, name=name)
        return make_result(
            out, f"backdoor[{self.trigger_name}]: {k} {src_name}->{tgt_name}, {self.integration}"
        )

    def poison(self, clean: Dataset) -> PoisonResult:
        """Alias of :meth:`poison_dataset`."""
        return self.poison_dataset(clean)

    def triggered_test(self, test: Dataset) -> Dataset:
        """``test`` without the target class, with the trigger applied and the true labels kept."""
        return apply_trigger(
            test,
            self.perturbation,
            exclude_class=self.target,
            trigger_name=self.trigger_name,
        )


def apply_trigger(
    dataset: Dataset,
    perturbation: Perturbation | Sequence[Perturbation],
    *,
    exclude_class: str | int | None = None,
    trigger_name: str = "custom",
) -> Dataset:
    """A triggered copy of ``dataset`` that keeps the TRUE labels (for attack-success measurement).

    Samples of ``exclude_class`` (normally the attack's target) are dropped, since a triggered
    target-class image classified as the target says nothing about the backdoor. Every returned
    sample carries the trigger, so its ``poison_mask`` is all True; its source tags become
    ``"<old source>+trigger:<trigger_name>"``. ``dataset`` is not modified.
    """
    check_param("perturbation", perturbation, TRIGGER)
    check_param("dataset", dataset, InstanceOf(Dataset, "a Dataset"))
    check_param("exclude_class", exclude_class, None, CLASS)
    if exclude_class is None:
        keep = np.arange(len(dataset))
    else:
        excl = resolve_class(dataset, exclude_class, "exclude_class")
        keep = np.flatnonzero(dataset.y != excl)
    if keep.size == 0:
        raise ValueError(f"no samples left to trigger after excluding class {exclude_class!r}")
    x_t = apply_perturbation(perturbation, dataset.x[keep])
    source = np.array([f"{s}+trigger:{trigger_name}" for s in dataset.source[keep]], dtype=object)
    return Dataset(
        x=x_t,
        y=dataset.y[keep].copy(),
        class_names=dataset.class_names,
        source=source,
        name=f"{dataset.name}+trigger[{trigger_name}]",
        poison_mask=np.ones(keep.size, dtype=bool),
    )
