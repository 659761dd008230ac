"""The placebo of the clean-label attacks: the same images and budget, a random perturbation.

A crafted attack changes ``count`` target-class training images inside an L-inf ball of radius
``eps``. Whether an effect seen in its victims (a success, a drop in clean accuracy, a victim
whose fine-tune collapses) comes from *what* the optimisation put there, or only from changing
that many images by that much, takes a control that changes the same images by the same amount
in no chosen direction. :class:`RandomNoise` is that control: it goes through exactly the same
template (:meth:`~poisonlab.attacks.crafted.CraftedAttack.poison`: the same choice of images,
the same integer ball, the same report) with a random perturbation instead of an optimised one.

Schwarzschild et al., "Just How Toxic is Data Poisoning?", ICML 2021 (arXiv:2006.12557), compare
attacks against clean training only; a random-perturbation control is the standard placebo of
adversarial-example work (e.g. Madry et al., ICLR 2018, arXiv:1706.06083, report random noise of
the same radius as a baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonlab.attacks.base import ATTACKS
from poisonlab.attacks.crafted import Crafted, CraftedAttack
from poisonlab.attacks.crafting import Surrogate, max_linf
from poisonlab.data.dataset import Dataset
from poisonlab.params import Options

__all__ = ["RandomNoise"]


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class RandomNoise(CraftedAttack):
    """Random perturbation of the images a crafted attack would poison (a placebo control).

    Parameters
    ----------
    model, target, count, fraction, eps, batch_size, device, seed
        As for every crafted attack (:class:`~poisonlab.attacks.crafted.CraftedAttack`): the model
        is only checked against the images (the noise never reads it), ``eps`` is the radius of
        the noise, ``seed`` picks the images and draws the noise.
    steps : int
        Unused (no optimisation); 1, so that the report says one draw.
    distribution : {"sign", "uniform"}
        ``"sign"`` (default): every pixel value moves by exactly ``+/- floor(eps * 255)`` grey
        levels, the corners of the ball where projected-gradient poisons mostly end, so the
        placebo's perturbation is as large as a saturated poison's; ``"uniform"``: a uniform
        integer offset in ``[-r, r]``. Values are clipped to [0, 255] as every poison is.

    Notes
    -----
    The report's ``loss_initial`` and ``loss_final`` are 0.0 (there is no objective);
    ``extras["mean_abs_change"]`` is the mean absolute change in grey levels, after clipping.
    """

    name = "random_noise"
    parameter_constraints = {
        **CraftedAttack.parameter_constraints,
        "distribution": [Options("sign", "uniform")],
    }

    steps: int = 1
    distribution: str = "sign"

    @property
    def radius(self) -> int:
        """The noise radius in grey levels: ``floor(eps * 255)``, as the crafted attacks' ball."""
        return int(np.floor(float(self.eps) * 255.0 + 1e-6))

    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        bases = clean.x[indices]
        # a generator of its own (not the one that picked the images): the same seed gives the
        # same noise whatever the selection drew
        rng = np.random.default_rng([self.seed, 1])
        r = self.radius
        if self.distribution == "sign":
            offsets = rng.choice(np.array([-r, r], dtype=np.int16), size=bases.shape)
        else:
            offsets = rng.integers(-r, r + 1, size=bases.shape, dtype=np.int16)
        poisons = np.clip(bases.astype(np.int16) + offsets, 0, 255).astype(np.uint8)
        change = float(np.abs(poisons.astype(np.int16) - bases.astype(np.int16)).mean())
        extras = {"mean_abs_change": change, "max_linf": max_linf(poisons, bases)}
        return Crafted(poisons, 0.0, 0.0, extras)

    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        return (
            f"random_noise ({self.distribution}): {n} images of {clean.class_names[target]!r} "
            f"moved by random noise of radius {self.radius}/255, labels unchanged (placebo)"
        )
