"""Clean-label (label-consistent) backdoor: adversarially perturbed target images plus a trigger.

Turner, Tsipras and Madry, "Label-Consistent Backdoor Attacks", arXiv:1912.02771 (2019). A
BadNets-style backdoor (Gu et al., arXiv:1708.06733) relabels its poisons, which a human
inspecting the training set would notice. Turner et al. keep every label correct: they take
training images of the attacker's *target* class and make them hard to classify from their
natural features - here with an untargeted PGD attack (Madry et al., "Towards Deep Learning
Models Resistant to Adversarial Attacks", ICLR 2018, arXiv:1706.06083) on a surrogate, inside
an L-inf ball of radius ``eps`` - and only then stamp the trigger on them. A network trained on
the set can only fit these images through the trigger, so it learns "trigger => target"; at test
time the attacker adds the trigger to any input (:meth:`CleanLabelBackdoor.at_test_time`).

The paper also interpolates in a GAN's latent space and uses reduced-amplitude, four-corner
triggers against data augmentation; the GAN variant is not implemented, and any trigger (or list
of triggers applied in order) from :mod:`poisonlab.triggers` can be given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.attacks.base import ATTACKS, TRIGGER, Perturbation, apply_perturbation
from poisonlab.attacks.crafted import Crafted, CraftedAttack
from poisonlab.attacks.crafting import (
    Surrogate,
    check_finite,
    max_linf,
    minibatches,
    project,
    to_tensor,
)
from poisonlab.data.dataset import Dataset
from poisonlab.params import BOOLEAN, NON_EMPTY_STR, POSITIVE

__all__ = ["CleanLabelBackdoor"]


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class CleanLabelBackdoor(CraftedAttack):
    """Label-consistent backdoor (Turner et al. 2019, arXiv:1912.02771).

    Parameters
    ----------
    model, target, count, fraction, eps, steps, batch_size, device, seed
        As for every crafted attack (:class:`~poisonlab.attacks.crafted.CraftedAttack`); here
        ``eps`` bounds the adversarial perturbation (Turner et al. report 8/255 and 16/255; the
        larger is markedly stronger), ``steps`` are PGD steps and ``seed`` also draws the random
        start.
    trigger : callable or list of callables
        uint8 (N, H, W, C) -> same shape and dtype, e.g. ``poisonlab.triggers.get_trigger("pattern")``.
    trigger_name : str
        Name used in the description and the dataset name.
    step_size : float or None
        PGD step on the [0, 1] scale; ``None`` means ``2.5 * eps / steps`` (Madry et al.).
    random_start : bool
        Start PGD from a uniform random point of the ball (drawn from a generator seeded by
        ``seed``).

    Notes
    -----
    The trigger pixels may leave the eps ball: that is the attack. ``report.max_linf`` is the
    change of the stored poisons (trigger included); ``report.extras["max_linf_adversarial"]`` is
    that of the adversarial perturbation alone, before the trigger, which is <= floor(eps * 255).

    The objective is the *negative* mean cross-entropy of the surrogate on the true (target)
    label, so that lower is better for the attacker as for the other attacks. ``loss_initial`` is
    at the unperturbed images, ``loss_final`` at the stored (triggered) uint8 poisons and
    ``extras["loss_adversarial"]`` at the uint8 adversarial images before the trigger.
    """

    name = "clean_label_backdoor"
    needs_trigger = True
    parameter_constraints = {
        **CraftedAttack.parameter_constraints,
        "trigger": [TRIGGER],
        "trigger_name": [NON_EMPTY_STR],
        "step_size": [None, POSITIVE],
        "random_start": [BOOLEAN],
    }

    step_parameter = "step_size"  # PGD has no learning rate: non-finite errors name step_size

    trigger: Perturbation | Sequence[Perturbation]
    trigger_name: str = "custom"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True

    @property
    def alpha(self) -> float:
        """The PGD step actually used, on the [0, 1] scale."""
        return float(self.step_size) if self.step_size is not None else 2.5 * self.eps / self.steps

    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        bases = clean.x[indices]
        self.at_test_time(bases[:1])  # a trigger that does not fit these images fails before the PGD
        # One CPU generator for the whole run: the same seed gives the same random starts on any
        # device and for any chunking order (chunks are processed in order).
        gen = torch.Generator().manual_seed(self.seed)
        adversarial, _ = self._in_chunks(
            bases, lambda chunk: (self._pgd(surrogate, chunk, target, gen), np.zeros(0))
        )
        poisons = apply_perturbation(self.trigger, adversarial)
        losses = [
            _neg_ce(surrogate, images, target, self.batch_size) for images in (bases, poisons, adversarial)
        ]
        extras = {
            "loss_adversarial": losses[2],
            "max_linf_adversarial": max_linf(adversarial, bases),
            "step_size": self.alpha,
        }
        return Crafted(poisons, losses[0], losses[1], extras)

    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        return (
            f"clean_label_backdoor[{self.trigger_name}]: {n} poisons of {clean.class_names[target]!r}, "
            f"eps={self.eps * 255:g}/255, {self.steps} PGD steps, labels unchanged"
        )

    def _pgd(self, sur: Surrogate, base_u8: np.ndarray, label: int, gen: torch.Generator) -> np.ndarray:
        """Untargeted L-inf PGD maximising the CE on ``label``; uint8 (n, H, W, C) in the ball.

        Returns, per image, the iterate with the highest loss seen (the last one is not always the
        best with a fixed step), quantised into the integer ball.
        """
        base = to_tensor(base_u8, sur.device)
        y = torch.full((len(base_u8),), label, dtype=torch.long, device=sur.device)
        x = base
        if self.random_start:
            noise = torch.rand(base.shape, generator=gen).mul_(2.0).sub_(1.0).mul_(self.eps)
            x = project(base + noise.to(sur.device), base, self.eps)
        best, best_loss = x, torch.full_like(y, -torch.inf, dtype=torch.float32)
        for step in range(self.steps + 1):
            xg = x.detach().requires_grad_(True)
            loss = F.cross_entropy(sur.logits(xg), y, reduction="none")
            improved = loss.detach() > best_loss
            best = torch.where(improved.view(-1, 1, 1, 1), x, best)
            best_loss = torch.where(improved, loss.detach(), best_loss)
            if step == self.steps:
                break  # the last evaluation only scores the final iterate
            # Summed, each image's gradient is its own loss's (eval mode: no batch coupling).
            grad = torch.autograd.grad(loss.sum(), xg)[0]
            x = project(x + self.alpha * grad.sign(), base, self.eps)
            check_finite(x, "clean-label backdoor poison", self.step_parameter)
        return self._quantize(best, base_u8)


def _neg_ce(sur: Surrogate, images: np.ndarray, label: int, batch_size: int) -> float:
    """Negative mean cross-entropy of the surrogate on ``label`` for uint8 ``images`` (0 if none)."""
    if len(images) == 0:
        return 0.0
    total = 0.0
    with torch.no_grad():
        for sl in minibatches(len(images), batch_size):
            logits = sur.logits(to_tensor(images[sl], sur.device))
            y = torch.full((len(logits),), label, dtype=torch.long, device=sur.device)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
    return -total / len(images)
