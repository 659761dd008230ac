"""Feature collision: clean-label targeted poisoning ("Poison Frogs").

Shafahi et al., "Poison Frogs! Targeted Clean-Label Poisoning Attacks on Neural Networks",
NeurIPS 2018 (arXiv:1804.00792). The attacker wants one test image - the *victim* (the paper's
"target instance") - classified as its own *target* class. It takes a few correctly labelled
training images of the target class (the *bases*) and nudges each until its feature vector in
the surrogate collides with the victim's, while staying close to the base in pixel space:

    minimise_x  ||f(x) - f(t)||^2 + beta * ||x - b||^2

solved by forward-backward splitting: a gradient step on the feature term, then the closed-form
proximal step of the pixel term. A victim that the retrained (or fine-tuned) network sees near
the poisons in feature space is pulled across the decision boundary with them, although every
poison keeps its true label.

Two options of the literature:

* *watermarking* (Poison Frogs, section 4.2): the base starts as ``(1 - w) * base + w * victim``
  and the proximal term pulls toward that blend, which makes collisions far easier on networks
  trained end to end;
* an L-inf budget ``eps`` around the original base, the constraint added by Schwarzschild et al.,
  "Just How Toxic is Data Poisoning?", ICML 2021 (arXiv:2006.12557), for comparable benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch

from poisonlab.attacks.base import ATTACKS
from poisonlab.attacks.crafted import Crafted, CraftedAttack
from poisonlab.attacks.crafting import (
    EPS,
    VICTIMS,
    Surrogate,
    check_finite,
    project,
    to_tensor,
)
from poisonlab.data.dataset import Dataset
from poisonlab.params import POSITIVE, InstanceOf, Interval

__all__ = ["FeatureCollision"]


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class FeatureCollision(CraftedAttack):
    """Feature-collision poisoning (Shafahi et al. 2018, arXiv:1804.00792).

    Parameters
    ----------
    model, target, count, fraction, steps, batch_size, device, seed
        As for every crafted attack (:class:`~poisonlab.attacks.crafted.CraftedAttack`); here
        ``steps`` are forward-backward splitting iterations (one per ART ``max_iter``, ART 1.20.1;
        its step size and watermarking differ: experiments/chapter/feature-collision-chapter.yaml),
        chunks of ``batch_size`` poisons are independent and ``seed`` only picks which
        target-class images become poisons (the optimisation is deterministic).
    victims : np.ndarray
        uint8 victim image(s) in [0, 255], (H, W, C) or (M, H, W, C), the shape the model expects.
        With M > 1 the poisons collide toward the mean victim feature and are watermarked with
        the mean victim image.
    feature_layer : str
        ``"penultimate"``, ``"logits"`` or a module name of the model (e.g. ``"blocks.1"``).
    eps : float or None
        L-inf radius on the [0, 1] scale around the original base; ``None`` (the paper) is
        unbounded apart from [0, 1]. With ``eps`` set the watermarked start is projected into the
        ball, while the proximal term still pulls toward the (possibly outside) watermarked base.
    lr : float
        Forward step size in [0, 1] pixel units (the paper's lambda). Halved per poison whenever
        a step would raise that poison's objective; such steps are rejected, so the objective
        never increases and a too-large ``lr`` degrades gracefully.
    similarity_coeff : float
        ``beta = similarity_coeff * (feature_dim / input_dim) ** 2`` (the paper's scaling with
        ART's default coefficient).
    watermark : float or None
        Watermark opacity ``w`` in [0, 1); ``None`` or 0 disables it.

    Notes
    -----
    The reported objective is ``||f(x) - f(t)||^2 + beta * ||x - b||^2`` per poison (x on the
    [0, 1] scale, ``b`` the watermarked base), averaged over the poisons; ``loss_initial`` is at
    the original images, ``loss_final`` at the stored uint8 poisons. ``extras`` adds the mean
    feature distances ``feature_dist_initial`` / ``feature_dist_final`` and ``beta``.
    """

    name = "feature_collision"
    needs_victims = True
    parameter_constraints = {
        **CraftedAttack.parameter_constraints,
        "eps": [None, EPS],
        "victims": [VICTIMS],
        "feature_layer": [InstanceOf(str, "a layer name (str)")],
        "lr": [POSITIVE],
        "similarity_coeff": [POSITIVE],
        "watermark": [None, Interval(Real, 0, 1, closed="left")],
    }

    victims: np.ndarray
    feature_layer: str = "penultimate"
    eps: float | None = None
    steps: int = 200
    lr: float = 0.01
    similarity_coeff: float = 256.0
    watermark: float | None = 0.3

    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        victims = self.victim_batch
        t_feat = surrogate.batched_features(victims, self.batch_size).mean(0, keepdim=True)
        check_finite(t_feat, "victim feature", step_param=None)  # no step taken yet
        beta = self.similarity_coeff * (t_feat.shape[1] / float(np.prod(victims.shape[1:]))) ** 2
        mean_victim = to_tensor(victims, surrogate.device).mean(0, keepdim=True)
        poisons, totals = self._in_chunks(  # totals: obj0, obj1, dist0, dist1 summed over poisons
            clean.x[indices], lambda bases: self._craft_chunk(surrogate, bases, t_feat, mean_victim, beta)
        )
        means = totals / max(len(indices), 1)
        extras = {
            "feature_dist_initial": float(means[2]),
            "feature_dist_final": float(means[3]),
            "beta": beta,
            "num_victims": len(victims),
        }
        return Crafted(poisons, float(means[0]), float(means[1]), extras)

    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        eps = "none" if self.eps is None else f"{self.eps * 255:g}/255"
        return (
            f"feature_collision: {n} poisons of {clean.class_names[target]!r} toward "
            f"{len(self.victim_batch)} victim(s), layer={self.feature_layer}, eps={eps}, "
            f"watermark={self.watermark}, {self.steps} steps"
        )

    # ------------------------------------------------------------------------------ optimisation
    def _craft_chunk(
        self,
        sur: Surrogate,
        base_u8: np.ndarray,
        t_feat: torch.Tensor,
        mean_victim: torch.Tensor,
        beta: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Poisons for one chunk of bases (uint8 (n, H, W, C)) and the chunk's summed numbers."""
        base = to_tensor(base_u8, sur.device)
        w = float(self.watermark or 0.0)
        anchor = (1.0 - w) * base + w * mean_victim  # b: the proximal term's centre
        x = project(anchor, base, self.eps)
        obj, dist, grad = _objective(sur, x, t_feat, anchor, beta, with_grad=True)
        lr = torch.full((len(base_u8),), float(self.lr), dtype=torch.float64, device=sur.device)
        for _ in range(self.steps):
            cand = project(_splitting_step(x, grad, anchor, lr, beta), base, self.eps)
            check_finite(cand, "feature-collision poison")
            c_obj, c_dist, c_grad = _objective(sur, cand, t_feat, anchor, beta, with_grad=True)
            # Monotone descent (the paper halves lambda when the objective rises): reject the
            # step for those poisons and retry them with half the step size.
            ok = c_obj <= obj
            keep = ok.view(-1, 1, 1, 1)
            x, grad = torch.where(keep, cand, x), torch.where(keep, c_grad, grad)
            obj, dist = torch.where(ok, c_obj, obj), torch.where(ok, c_dist, dist)
            lr = torch.where(ok, lr, lr * 0.5)
        poisons = self._quantize(x, base_u8)
        obj0, dist0, _ = _objective(sur, base, t_feat, anchor, beta, with_grad=False)
        final = to_tensor(poisons, sur.device)
        obj1, dist1, _ = _objective(sur, final, t_feat, anchor, beta, with_grad=False)
        sums = np.array([float(obj0.sum()), float(obj1.sum()), float(dist0.sum()), float(dist1.sum())])
        return poisons, sums


def _splitting_step(
    x: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor, lr: torch.Tensor, beta: float
) -> torch.Tensor:
    """Forward step ``z = x - lr * grad``, then the proximal step ``(z + lr*beta*b) / (1 + lr*beta)``.

    Written as ``b + (x - b) / (1 + lr*beta) - grad / (1/lr + beta)`` with the coefficients in
    float64: the same value, but finite for any positive ``lr`` (no ``inf / inf``).
    """
    shrink = (1.0 / (1.0 + lr * beta)).float().view(-1, 1, 1, 1)
    step = (1.0 / (1.0 / lr + beta)).float().view(-1, 1, 1, 1)
    return anchor + (x - anchor) * shrink - grad * step


def _objective(
    sur: Surrogate,
    x: torch.Tensor,
    t_feat: torch.Tensor,
    anchor: torch.Tensor,
    beta: float,
    *,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-poison objective and feature distance, (n,) each, and the gradient of the feature
    term with respect to ``x`` ((n, C, H, W); ``None`` without ``with_grad``)."""
    with torch.enable_grad() if with_grad else torch.no_grad():
        xg = x.detach().requires_grad_(with_grad)
        dist = (sur.features(xg) - t_feat).pow(2).sum(1)
        # Summing is exact here: in eval mode every poison's distance depends on its own pixels only.
        grad = torch.autograd.grad(dist.sum(), xg)[0] if with_grad else None
    dist = dist.detach()
    obj = dist + beta * (x.detach() - anchor).pow(2).flatten(1).sum(1)
    return obj, dist, grad
