"""The common base of the optimisation-based (clean-label) attacks: one ``poison()`` for all.

Hidden-trigger backdoor, feature collision, clean-label backdoor and gradient matching differ
only in how they optimise the poisons. Everything around that is the same and lives here, as a
template method: :meth:`CraftedAttack.poison` checks the data, picks the target-class images to
perturb, copies the surrogate onto the crafting device, times the run and reads the peak memory,
and writes the uint8 poisons over their originals with labels unchanged. A subclass implements
:meth:`CraftedAttack._craft` (the optimisation, returning :class:`Crafted`) and
:meth:`CraftedAttack._describe` (the one-line description), and declares its own parameters.

The shared parameters (``model``, ``target``, the ``count``/``fraction`` budget, ``eps``,
``steps``, ``batch_size``, ``device``, ``seed``) and their constraints are declared once, here;
subclasses override defaults by redeclaring a field.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from poisonlab.attacks.base import (
    CLASS,
    COUNT,
    FRACTION,
    Perturbation,
    PoisoningAttack,
    apply_perturbation,
    check_count_fraction,
    check_source_target,
)
from poisonlab.attacks.crafting import (
    EPS,
    MODEL,
    CraftedPoisonResult,
    CraftReport,
    Surrogate,
    check_feature_layer,
    check_victims,
    max_linf,
    measure,
    minibatches,
    quantize_in_ball,
    replace_samples,
    select_poisons,
)
from poisonlab.data.dataset import Dataset
from poisonlab.device import resolve_device
from poisonlab.models.base import PoisonlabModel
from poisonlab.params import DEVICE, POSITIVE_INT, SEED, InstanceOf, check_param
from poisonlab.threads import compute_threads, estimate_flops

__all__ = ["Crafted", "CraftedAttack"]


@dataclass(frozen=True)
class Crafted:
    """What :meth:`CraftedAttack._craft` returns.

    Attributes
    ----------
    poisons : np.ndarray
        uint8 (k, H, W, C), one per chosen index, in the same order.
    loss_initial, loss_final : float
        The attack's objective on the originals and on the stored poisons (lower is better for
        the attacker; see each attack's Notes).
    extras : dict
        Attack-specific numbers for :attr:`CraftReport.extras`.
    """

    poisons: np.ndarray
    loss_initial: float
    loss_final: float
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, eq=False)
class CraftedAttack(PoisoningAttack):
    """Base of the attacks that optimise clean-label poisons against a surrogate model.

    Parameters
    ----------
    model : PoisonlabModel
        Surrogate to craft against (white box: the victim's own pre-trained weights). A copy is
        used; the model itself is never modified.
    target : str or int
        Attacker's class: the poisons are training images of this class, labels unchanged.
    count, fraction : int or float
        Budget, exactly one: a number of poisons, or a share in (0, 1] of the whole training set.
    eps : float
        L-inf radius on the [0, 1] pixel scale; stored poisons differ from their originals by at
        most ``floor(eps * 255)`` grey levels (a visible trigger added afterwards may exceed it).
    steps : int
        Optimisation steps (per chunk or restart, as the attack documents).
    batch_size : int
        Poisons optimised together (a memory bound).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<n>"``.
    seed : int
        Picks the poisons and seeds the optimisation.
    """

    needs_model = True
    needs_target_class = True
    clean_label = True
    crafted = True
    #: keep ``requires_grad`` on the surrogate's parameters (gradient matching needs them)
    trainable_surrogate: ClassVar[bool] = False
    #: the constructor parameter setting the optimiser's step (named in non-finite errors)
    step_parameter: ClassVar[str] = "lr"

    parameter_constraints = {
        "model": [MODEL],
        "target": [CLASS],
        "count": COUNT,
        "fraction": FRACTION,
        "eps": [EPS],
        "steps": [POSITIVE_INT],
        "batch_size": [POSITIVE_INT],
        "device": [DEVICE],
        "seed": [SEED],
    }

    model: PoisonlabModel
    target: str | int
    count: int | None = None
    fraction: float | None = None
    eps: float | None = 16 / 255
    steps: int = 100
    batch_size: int = 250
    device: str = "cpu"
    seed: int = 0

    # ------------------------------------------------------------------------------ checks
    def _check(self) -> None:
        check_count_fraction(self.count, self.fraction, require_one=True)
        if self.needs_source_class:
            check_source_target(getattr(self, "source", None), self.target)
        if self.needs_victims:
            shape = tuple(self.victim_batch.shape[1:])
            if shape != tuple(self.model.input_shape):
                raise ValueError(
                    f"victims: the model expects images of shape {tuple(self.model.input_shape)} "
                    f"(H, W, C), got {shape}"
                )
        check_feature_layer(self.model, self.feature_layer_used)
        try:  # "cuda" without a GPU fails when configured, not after setup
            resolve_device(self.device)
        except ValueError:  # its message names the CLI's --device, not this parameter
            raise ValueError(
                f"device must be 'auto' or 'cpu' here: no CUDA GPU is available, got {self.device!r}"
            ) from None

    @property
    def feature_layer_used(self) -> str:
        """The surrogate layer the attack reads (``"penultimate"`` unless it has ``feature_layer``)."""
        return getattr(self, "feature_layer", "penultimate")

    @property
    def victim_batch(self) -> np.ndarray:
        """The victim images as a (M, H, W, C) batch (attacks with :attr:`needs_victims`)."""
        return check_victims(getattr(self, "victims", None))

    @property
    def resolved_trigger(self) -> Perturbation | Sequence[Perturbation] | None:
        """The trigger stamped at test time (attacks with :attr:`needs_trigger`), else ``None``."""
        return getattr(self, "trigger", None)

    @property
    def tag(self) -> str:
        """Short label for the poisoned dataset's name: the registry name (and trigger name)."""
        return f"{self.name}[{self.trigger_name}]" if self.needs_trigger else self.name  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------ attacker's API
    def at_test_time(self, images: np.ndarray) -> np.ndarray:
        """What the attacker does to test ``images``: stamp the trigger, or nothing (a copy)."""
        check_param("images", images, InstanceOf(np.ndarray, "a numpy array"))
        trigger = self.resolved_trigger
        return images.copy() if trigger is None else apply_perturbation(trigger, images)

    def poison(self, clean: Dataset) -> CraftedPoisonResult:
        """``clean`` with the chosen target-class images replaced by their poisons.

        Returns a :class:`CraftedPoisonResult`: same labels and length as ``clean``, the poison
        mask set, and a :class:`CraftReport` of the crafting. ``clean`` is not modified.
        """
        check_param("clean", clean, InstanceOf(Dataset, "a poisonlab Dataset"))
        with measure() as clock:  # the surrogate copy counts: it is part of the attacker's cost
            surrogate = Surrogate(
                self.model,
                device=self.device,
                feature_layer=self.feature_layer_used,
                trainable=self.trainable_surrogate,
            )
            surrogate.check_images(clean.x, "clean")
            tgt, idx = select_poisons(
                clean, self.target, count=self.count, fraction=self.fraction, seed=self.seed
            )
            # the thread policy of training applies here too: a crafting step is a forward and a
            # backward pass of the surrogate on one chunk, and two threads of a small step on a
            # busy machine run many times slower than one (poisonlab.threads)
            chunk_flops = (
                3.0 * estimate_flops(surrogate.net, clean.image_shape) * min(self.batch_size, idx.size)
            )
            with compute_threads(chunk_flops, surrogate.device):
                crafted = self._craft(surrogate, clean, tgt, idx)
        report = CraftReport(
            seconds=clock.seconds,
            peak_rss_mib=clock.peak_rss_mib,
            steps=self.steps,
            loss_initial=float(crafted.loss_initial),
            loss_final=float(crafted.loss_final),
            max_linf=max_linf(crafted.poisons, clean.x[idx]),
            extras=crafted.extras,
        )
        description = self._describe(clean, tgt, idx.size)
        return replace_samples(
            clean, idx, crafted.poisons, tag=self.tag, description=description, report=report
        )

    # ------------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        """Optimise poisons for ``clean.x[indices]`` (images of class ``target``)."""

    @abstractmethod
    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        """One line for reports: the attack, ``n`` poisons of ``target`` and its settings."""

    def _quantize(self, x: torch.Tensor, originals: np.ndarray) -> np.ndarray:
        """Float poisons (n, C, H, W) -> uint8 (n, H, W, C) inside this attack's integer eps ball."""
        return quantize_in_ball(x, originals, self.eps, self.step_parameter)

    def _in_chunks(
        self, bases: np.ndarray, craft_chunk: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``craft_chunk`` on consecutive chunks of at most ``batch_size`` bases.

        ``craft_chunk(chunk) -> (uint8 poisons, numbers summed over the chunk)``; returns all the
        poisons in order and those numbers summed over every chunk.
        """
        poisons = np.empty_like(bases)
        totals: np.ndarray | None = None
        for sl in minibatches(len(bases), self.batch_size):
            poisons[sl], sums = craft_chunk(bases[sl])
            totals = sums if totals is None else totals + sums
        assert totals is not None  # select_poisons never returns an empty selection
        return poisons, totals
