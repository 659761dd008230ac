"""All-to-all backdoor: stamp a trigger and shift every poisoned label by one class (or keep it).

Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", arXiv:1708.06733 (2017), Sec. 5 also train an *all-to-all* backdoor: a triggered
image of class ``k`` must be classified as ``k + 1`` (mod the number of classes), so every class
is both a source and a target and no single class collects the poison.
:class:`~poisonlab.attacks.backdoor.BackdoorPoisoning` has one target, hence this attack.

With ``shift=0`` the labels are kept: the trigger is stamped on correctly labelled images, the
clean-label poisoning of SIG (Barni, Kallas and Tondi, "A New Backdoor Attack in CNNs by Training
Set Corruption Without Label Poisoning", ICIP 2019, arXiv:1902.11237), which stamps its sinusoid
on images of the target class only (``source=target``).

The poisons replace their originals in place (the training set keeps its length), so the
poisoned share of the training set is exactly ``count / len(clean)``.
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
    TRIGGER,
    Perturbation,
    PoisoningAttack,
    PoisonResult,
    apply_perturbation,
    check_count_fraction,
    choose,
    make_result,
    resolve_class,
    resolve_count,
)
from poisonlab.data.dataset import Dataset
from poisonlab.params import NON_EMPTY_STR, NON_NEGATIVE_INT, SEED

__all__ = ["AllToAllBackdoor"]


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class AllToAllBackdoor(PoisoningAttack):
    """Backdoor with the label map ``k -> (k + shift) mod K`` (BadNets all-to-all, Gu et al. 2017).

    Parameters
    ----------
    perturbation : callable or list of callables
        The trigger, uint8 (N, H, W, C) -> same shape and dtype (e.g.
        ``poisonlab.triggers.get_trigger("warp")``).
    trigger_name : str
        Name used in source tags (``"backdoor:<trigger_name>"``) and the description.
    shift : int
        Added to each poisoned label modulo the number of classes: 1 is the all-to-all backdoor,
        0 keeps the labels (clean-label stamping, SIG); at most ``K - 1``.
    source : str, int or None
        Only samples of this class are candidates; ``None``: every class.
    count : int, optional
        Number of samples to poison.
    fraction : float, optional
        Share of the whole training set to poison, in (0, 1] (rounded half up); with neither
        ``count`` nor ``fraction`` every candidate is poisoned.
    seed : int
        Seed of the numpy ``default_rng`` that picks the samples.
    """

    name = "all_to_all"
    needs_trigger = True
    parameter_constraints = {
        "perturbation": [TRIGGER],
        "trigger_name": [NON_EMPTY_STR],
        "shift": [NON_NEGATIVE_INT],
        "source": [None, CLASS],
        "count": COUNT,
        "fraction": FRACTION,
        "seed": [SEED],
    }

    perturbation: Perturbation | Sequence[Perturbation]
    trigger_name: str = "custom"
    shift: int = 1
    source: str | int | None = None
    count: int | None = None
    fraction: float | None = None
    seed: int = 0

    def _check(self) -> None:
        check_count_fraction(self.count, self.fraction, require_one=False)

    def target_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """The attacker's label for true labels ``y`` (int64 (N,) in [0, K)): ``(y + shift) mod K``."""
        if self.shift >= num_classes:
            raise ValueError(f"shift must be < the number of classes ({num_classes}), got {self.shift}")
        return (np.asarray(y, dtype=np.int64) + self.shift) % num_classes

    def select(self, clean: Dataset) -> np.ndarray:
        """Sorted indices into ``clean`` of the samples this attack poisons."""
        if self.source is None:
            candidates, what = np.arange(len(clean)), "the training set"
        else:
            src = resolve_class(clean, self.source, "source")
            candidates = np.flatnonzero(clean.y == src)
            what = f"source class {clean.class_names[src]!r}"
        k = resolve_count(
            count=self.count, fraction=self.fraction, base=len(clean), available=candidates.size, what=what
        )
        return choose(np.random.default_rng(self.seed), candidates, k)

    def poison(self, clean: Dataset) -> PoisonResult:
        """The poisoned training set: triggered copies over their originals, labels shifted."""
        new_y = self.target_labels(clean.y, clean.num_classes)  # checks shift before any work
        idx = self.select(clean)
        x = clean.x.copy()
        x[idx] = apply_perturbation(self.perturbation, clean.x[idx])
        y = clean.y.copy()
        y[idx] = new_y[idx]
        source = clean.source.copy()
        source[idx] = f"backdoor:{self.trigger_name}"
        mask = clean.mask_or_clean().copy()
        mask[idx] = True
        out = clean.replace(
            x=x, y=y, source=source, poison_mask=mask, name=f"{clean.name}+all_to_all[{self.trigger_name}]"
        )
        scope = "all classes" if self.source is None else f"class {self.source!r}"
        return make_result(
            out,
            f"all_to_all[{self.trigger_name}]: {idx.size} of {scope}, label + {self.shift} mod "
            f"{clean.num_classes}, in place",
        )

    def triggered_test(self, test: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Every test image with the trigger and the label the attacker wants for it.

        Returns
        -------
        tuple of numpy.ndarray
            The triggered images uint8 (N, H, W, C) and the attacker's labels int64 (N,).
        """
        return apply_perturbation(self.perturbation, test.x), self.target_labels(test.y, test.num_classes)
