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

from poisonlab.attacks.base import PoisoningAttack, check_class_spec, check_count_fraction, check_seed
from poisonlab.attacks.crafting import (
    CraftedPoisonResult,
    CraftReport,
    Surrogate,
    check_eps,
    check_finite,
    check_model,
    check_positive,
    check_steps,
    check_victims,
    max_linf,
    measure,
    minibatches,
    project,
    quantize_in_ball,
    replace_samples,
    select_poisons,
    to_tensor,
)
from poisonlab.data.dataset import Dataset
from poisonlab.models.base import PoisonlabModel
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


@dataclass(frozen=True, kw_only=True, eq=False)
class GradientMatching(PoisoningAttack):
    """Witches' Brew gradient-matching poisons (Geiping et al., ICLR 2021, arXiv:2009.02276).

    Parameters
    ----------
    model : PoisonlabModel
        Surrogate (white box: the victim's pre-trained weights). Never modified.
    victims : np.ndarray
        uint8 test images in [0, 255], (M, H, W, C) or one (H, W, C), of the model's input shape;
        the attacker wants them classified as ``target``.
    target : str or int
        Adversarial class; the poisons are training images of this class, labels unchanged.
    count, fraction : int or float, optional
        Budget, exactly one: a number of poisons, or a share in (0, 1] of the whole training set.
    eps : float
        L-inf radius on the [0, 1] scale, in (0, 1]; stored poisons differ from their originals by
        at most ``floor(eps * 255)`` grey levels.
    steps, restarts : int
        Adam steps per restart (paper: 240); random starts, the lowest final loss kept (paper: 8).
    lr : float
        Adam learning rate in units of ``eps`` (see the module docstring).
    augment : bool
        Differentiable random crop and flip of the poisons at every step.
    batch_size : int
        Poisons per double-backward chunk (bounds the memory, not the result).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed : int
        Picks the poisons and seeds initialisation and augmentation.
    """

    name = "gradient_matching"

    model: PoisonlabModel
    victims: np.ndarray
    target: str | int
    count: int | None = None
    fraction: float | None = None
    eps: float = 16 / 255
    steps: int = 240
    restarts: int = 1
    lr: float = 0.1
    augment: bool = True
    batch_size: int = 500
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        check_model(self.model)
        shape = tuple(check_victims(self.victims).shape[1:])
        if shape != tuple(self.model.input_shape):
            raise ValueError(
                f"victims: the model expects images of shape {tuple(self.model.input_shape)} (H, W, C), "
                f"got {shape}"
            )
        check_class_spec(self.target, "target")
        check_count_fraction(self.count, self.fraction, require_one=True)
        check_eps(self.eps)
        check_steps(self.steps)
        check_steps(self.restarts, "restarts")
        check_positive(self.lr, "lr")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be a bool, got {self.augment!r}")
        check_steps(self.batch_size, "batch_size")
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("auto", "cpu") or dev.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        check_seed(self.seed)

    def at_test_time(self, images: np.ndarray) -> np.ndarray:
        """Test images as they are: the attack needs no trigger at test time."""
        return images

    def poison(self, clean: Dataset) -> CraftedPoisonResult:
        """Craft the poisons and write them over their originals in a copy of ``clean``.

        Parameters
        ----------
        clean : Dataset
            Training set, uint8 (N, H, W, C) of the model's input shape. Not modified.

        Returns
        -------
        CraftedPoisonResult
            Same images, except the poisons, and the same labels as ``clean``; ``poison_mask`` set.
            The report's losses are ``1 - cos(g_p, g_adv)`` in [0, 2] without augmentation (lower is
            better for the attacker); ``extras`` holds every restart's loss.
        """
        with measure() as clock:
            m = self._matcher(clean)
            victims = check_victims(self.victims)
            tgt, idx = select_poisons(
                clean, self.target, count=self.count, fraction=self.fraction, seed=self.seed
            )
            m.t_hat = _adversarial_direction(m, victims, tgt)
            base_u8 = clean.x[idx]
            base, y = to_tensor(base_u8, m.sur.device), torch.from_numpy(clean.y[idx]).to(m.sur.device)
            loss_initial, losses, best = m.loss(base, y), [], None
            for r in range(self.restarts):
                poisons = quantize_in_ball(self._craft(m, base, y, r), base_u8, self.eps)
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
        report = CraftReport(
            seconds=clock.seconds,
            peak_rss_mib=clock.peak_rss_mib,
            steps=self.steps,
            loss_initial=loss_initial,
            loss_final=losses[best[0]],
            max_linf=max_linf(best[1], base_u8),
            extras=extras,
        )
        k = 255 * self.eps
        eps = f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{self.eps:.4g}"
        desc = (
            f"gradient_matching: {idx.size} poisons of {clean.class_names[tgt]!r} (eps {eps}) "
            f"for {victims.shape[0]} victim(s)"
        )
        return replace_samples(clean, idx, best[1], tag=self.name, description=desc, report=report)

    def _matcher(self, clean: Dataset) -> _Matcher:
        """Surrogate copy on the device (eval mode, parameters trainable) after the shape checks."""
        sur = Surrogate(self.model, device=self.device, trainable=True)
        sur.check_images(check_victims(self.victims), "victims")
        sur.check_images(clean.x, "clean")
        h, w = clean.image_shape[:2]
        pad = max(1, round(4 * min(h, w) / 32)) if self.augment else None
        return _Matcher(sur, [p for p in sur.net.parameters() if p.requires_grad], self.batch_size, pad)

    def _craft(self, m: _Matcher, base: torch.Tensor, y: torch.Tensor, restart: int) -> torch.Tensor:
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
