"""Witches' Brew: clean-label targeted poisoning by gradient matching.

Geiping, Fowl, Huang, Czaja, Taylor, Moeller and Goldstein, "Witches' Brew: Industrial Scale Data
Poisoning via Gradient Matching", ICLR 2021 (arXiv:2009.02276). The attack perturbs correctly
labelled target-class training images so that their training gradient ``g_p`` points along
``g_adv = grad_theta CE(f(victims), target)``, minimising ``1 - <g_p, g_adv> / (|g_p| |g_adv|)`` over
all trainable parameters (one concatenated vector, as in the paper): training on the poisons then
also lowers the adversarial loss on the victims.

Choices where the paper leaves room:

* Adam on the raw gradient of the perturbation with learning rate ``lr * eps``: Adam normalises per
  coordinate, so early steps move a pixel by about ``lr * eps`` (the role of the paper's signed
  Adam); the paper's x0.1 decay at 3/8, 5/8 and 7/8 of the steps is kept. Each step is projected
  back into the eps ball and [0, 1].
* The surrogate is in eval mode: BatchNorm uses its running statistics and dropout is off, so
  ``g_p`` is a deterministic function of the poisons, independent of the chunking.
* ``augment``: each step sees a fresh differentiable random crop (padding 4 at 32x32, scaled with
  the image size) and flip of the poisons; the report's losses are measured without it.
* More poisons than ``batch_size``: the exact gradient takes two passes (first-order ``g_p`` chunk
  by chunk, then per chunk a Hessian-vector product with ``dL/dg_p``), so one chunk's
  double-backward graph is alive at a time.
* Each restart draws ``delta`` uniformly in the ball from a generator seeded by ``(seed, restart)``;
  the restart whose uint8 poisons have the lowest loss is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.attacks.base import ATTACKS
from poisonlab.attacks.crafted import Crafted, CraftedAttack
from poisonlab.attacks.crafting import VICTIMS, Surrogate, check_finite, minibatches, project, to_tensor
from poisonlab.data.dataset import Dataset
from poisonlab.params import BOOLEAN, POSITIVE, POSITIVE_INT
from poisonlab.training.augment import random_crop_flip

__all__ = ["GradientMatching"]

#: added to |g_p|^2 so the cosine (and its gradient) stays finite for a zero poison gradient
_TINY = 1e-30
#: fractions of the steps after which the learning rate drops 10x (the paper's schedule)
_MILESTONES = (3 / 8, 5 / 8, 7 / 8)


def _cosine_loss(g: torch.Tensor, t_hat: torch.Tensor) -> torch.Tensor:
    """``1 - cos(g, t_hat)`` for a unit vector ``t_hat``: in [0, 2], finite even for ``g = 0``."""
    return 1.0 - (g @ t_hat) / torch.sqrt(g @ g + _TINY)


@dataclass
class _Matcher:
    """The crafting problem: surrogate, its trainable parameters, unit ``g_adv`` and chunking."""

    sur: Surrogate
    params: list[torch.Tensor]
    batch_size: int
    pad: int | None  # crop padding; None: no augmentation
    t_hat: torch.Tensor | None = None

    def flat_grad(self, x: torch.Tensor, y: torch.Tensor, scale: float, graph: bool) -> torch.Tensor:
        """``scale * grad_theta sum_i CE(f(x_i), y_i)``, flat (P,); ``graph`` keeps it differentiable."""
        loss = F.cross_entropy(self.sur.logits(x), y, reduction="sum") * scale
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params, create_graph=graph)])

    def mean_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """First-order mean gradient over a batch (N, C, H, W), chunked, (P,)."""
        n = x.shape[0]
        return sum(self.flat_grad(x[s], y[s], 1.0 / n, False) for s in minibatches(n, self.batch_size))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Cosine loss of poisons ``x`` (N, C, H, W) in [0, 1], no augmentation."""
        loss = _cosine_loss(self.mean_grad(x, y), self.t_hat)
        check_finite(loss, "the gradient-matching loss")
        return float(loss)

    def augmented(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """Random crop + flip drawn from ``seed`` (the same seed replays the same transform)."""
        if self.pad is None:
            return x
        gen = torch.Generator().manual_seed(seed)
        # random_crop_flip draws its masks on the CPU, so it runs there; ``.to`` is differentiable.
        return random_crop_flip(x.cpu(), padding=self.pad, flip=True, generator=gen).to(x.device)

    def gradient(self, base: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, seeds: list) -> torch.Tensor:
        """Exact gradient w.r.t. ``delta`` of the cosine loss of all poisons ``base + delta``."""
        n = base.shape[0]
        chunks = minibatches(n, self.batch_size)
        if len(chunks) == 1:  # one pass: the whole double-backward graph fits
            d = delta.clone().requires_grad_(True)
            g = self.flat_grad(self.augmented(base + d, seeds[0]), y, 1.0 / n, True)
            (grad,) = torch.autograd.grad(_cosine_loss(g, self.t_hat), d)
            return grad
        # Pass 1: the whole poison gradient, first order (no graph kept), and v = dL/dg_p.
        g = sum(
            self.flat_grad(self.augmented(base[s] + delta[s], seed), y[s], 1.0 / n, False)
            for s, seed in zip(chunks, seeds, strict=True)
        )
        g_leaf = g.detach().requires_grad_(True)
        (v,) = torch.autograd.grad(_cosine_loss(g_leaf, self.t_hat), g_leaf)
        # Pass 2: dL/d delta_c = (d g_c / d delta_c)^T v, chunk by chunk, same augmentation seeds.
        grad = torch.empty_like(delta)
        for s, seed in zip(chunks, seeds, strict=True):
            d = delta[s].clone().requires_grad_(True)
            g_c = self.flat_grad(self.augmented(base[s] + d, seed), y[s], 1.0 / n, True)
            (grad[s],) = torch.autograd.grad(g_c @ v, d)
        return grad


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class GradientMatching(CraftedAttack):
    """Witches' Brew gradient-matching poisons (Geiping et al., ICLR 2021, arXiv:2009.02276).

    Parameters
    ----------
    model, target, count, fraction, eps, batch_size, device, seed
        As for every crafted attack (:class:`~poisonlab.attacks.crafted.CraftedAttack`); here
        ``batch_size`` is the number of poisons per double-backward chunk (it bounds the memory,
        not the result) and ``seed`` also seeds initialisation and augmentation.
    victims : np.ndarray
        uint8 test images in [0, 255], (M, H, W, C) or one (H, W, C), of the model's input shape;
        the attacker wants them classified as ``target``.
    steps, restarts : int
        Adam steps per restart (paper: 240); random starts, the lowest final loss kept (paper: 8).
    lr : float
        Adam learning rate in units of ``eps`` (see the module docstring).
    augment : bool
        Differentiable random crop and flip of the poisons at every step.

    Notes
    -----
    The report's losses are ``1 - cos(g_p, g_adv)`` in [0, 2] without augmentation (lower is
    better for the attacker); ``extras`` holds every restart's loss.
    """

    name = "gradient_matching"
    needs_victims = True
    trainable_surrogate = True
    parameter_constraints = {
        **CraftedAttack.parameter_constraints,
        "victims": [VICTIMS],
        "restarts": [POSITIVE_INT],
        "lr": [POSITIVE],
        "augment": [BOOLEAN],
    }

    victims: np.ndarray
    steps: int = 240
    restarts: int = 1
    lr: float = 0.1
    augment: bool = True
    batch_size: int = 500

    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        m = self._matcher(clean, surrogate)
        victims = self.victim_batch
        m.t_hat = _adversarial_direction(m, victims, target)
        base_u8 = clean.x[indices]
        base = to_tensor(base_u8, m.sur.device)
        y = torch.from_numpy(clean.y[indices]).to(m.sur.device)
        loss_initial, losses, best = m.loss(base, y), [], None
        for r in range(self.restarts):
            poisons = self._quantize(self._restart(m, base, y, r), base_u8)
            losses.append(m.loss(to_tensor(poisons, m.sur.device), y))
            if best is None or losses[-1] < losses[best[0]]:
                best = (r, poisons)
        assert best is not None  # restarts >= 1
        extras = {
            "restarts": self.restarts,
            "restart_losses": losses,
            "best_restart": best[0],
            "victims": int(victims.shape[0]),
            "lr": self.lr,
            "augment": self.augment,
        }
        return Crafted(best[1], loss_initial, losses[best[0]], extras)

    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        k = 255 * self.eps
        eps = f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{self.eps:.4g}"
        return (
            f"gradient_matching: {n} poisons of {clean.class_names[target]!r} (eps {eps}) "
            f"for {self.victim_batch.shape[0]} victim(s)"
        )

    def _matcher(self, clean: Dataset, surrogate: Surrogate | None = None) -> _Matcher:
        """The crafting problem on ``surrogate`` (a fresh trainable copy of the model by default)."""
        sur = surrogate or Surrogate(self.model, device=self.device, trainable=True)
        sur.check_images(self.victim_batch, "victims")
        sur.check_images(clean.x, "clean")
        h, w = clean.image_shape[:2]
        pad = max(1, round(4 * min(h, w) / 32)) if self.augment else None
        return _Matcher(sur, [p for p in sur.net.parameters() if p.requires_grad], self.batch_size, pad)

    def _restart(self, m: _Matcher, base: torch.Tensor, y: torch.Tensor, restart: int) -> torch.Tensor:
        """One restart: float poisons (N, C, H, W) in [0, 1] within ``eps`` of ``base``."""
        state = np.random.SeedSequence([self.seed, restart]).generate_state(1, dtype=np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        delta = ((torch.rand(base.shape, generator=gen) * 2.0 - 1.0) * self.eps).to(base.device)
        delta = (project(base + delta, base, self.eps) - base).requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=self.lr * self.eps)
        milestones = [int(self.steps * f) for f in _MILESTONES]
        n_chunks = len(minibatches(base.shape[0], self.batch_size))
        for step in range(self.steps):
            opt.param_groups[0]["lr"] = self.lr * self.eps * 0.1 ** sum(step >= t for t in milestones)
            seeds = torch.randint(0, 2**62, (n_chunks,), generator=gen).tolist()
            delta.grad = m.gradient(base, delta.detach(), y, seeds)
            check_finite(delta.grad, "the gradient of the gradient-matching loss")
            opt.step()
            with torch.no_grad():  # back into the eps ball and [0, 1]
                delta.copy_(project(base + delta, base, self.eps) - base)
            check_finite(delta, "the poison perturbation")
        return (base + delta).detach()


def _adversarial_direction(m: _Matcher, victims: np.ndarray, tgt: int) -> torch.Tensor:
    """Unit vector (P,) along ``g_adv``, the mean gradient of CE(f(victims), target)."""
    x = to_tensor(victims, m.sur.device)
    g = m.mean_grad(x, torch.full((x.shape[0],), tgt, device=x.device))
    # Scale by the largest entry first: squaring a tiny float32 gradient would underflow to 0.
    peak = g.abs().max()
    if not bool(torch.isfinite(peak)) or float(peak) == 0.0:
        raise ValueError(
            f"victims: the gradient of the adversarial loss toward target class {tgt} is {float(peak)} "
            "(the surrogate is already certain of the target, or non-finite); nothing to match"
        )
    g = g / peak
    return g / torch.linalg.vector_norm(g)
