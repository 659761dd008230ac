"""Reverse-engineered triggers: does the candidate model hide a shortcut to one class?

Neural Cleanse (Wang, Yao, Shan, Li, Viswanath, Zheng and Zhao, "Neural Cleanse: Identifying and
Mitigating Backdoor Attacks in Neural Networks", IEEE S&P 2019) asks, for every class ``k``, for
the smallest change that sends clean images of the other classes to ``k``: a mask ``m`` (H, W)
and a pattern ``p`` (H, W, C), both in [0, 1], stamped as ``x' = (1 - m) x + m p``, minimising

    cross-entropy(f(x'), k) + lambda_k * |m|_1

A backdoor is such a shortcut, learnt on purpose: the class it leads to needs a much smaller mask
than the others. With the masks' L1 norms ``l_k`` (in pixels), the median ``M`` and the median
absolute deviation scaled to a standard deviation (``1.4826 * median |l_k - M|``), the anomaly
index of class ``k`` is ``(M - l_k) / MAD``; the paper calls a class with index above 2 infected.

The search here is bounded: every class is optimised at once on a few hundred trusted images for
a fixed number of Adam steps (seconds for a digits model on one core), with the paper's dynamic
``lambda_k`` (raised while the mask succeeds on at least ``target_success`` of the images,
lowered while it does not); the smallest mask that succeeded is kept. A class that never
succeeds gets the whole image as its norm.

Against a trusted ``reference`` model (the serving model the candidate was fine-tuned from) each
reverse-engineered trigger is also measured on held-out trusted images with both models. A
shortcut that the reference takes too is a property of the data (one digit is a few strokes
from another), not something the new training data taught; one that only the candidate takes was
taught by its new training data. With a reference, a class is flagged when its trigger succeeds on
the candidate at least ``min_gap`` more often than on the reference, or when it is an outlier
(anomaly index above ``anomaly_threshold``) and succeeds at least ``min_gap / 2`` more often.
Without one, the paper's rule alone decides. A bounded search rarely reaches the truly minimal
mask, so on small images the backdoored class is not always an outlier; the comparison with the
reference is what separates a learnt shortcut from a natural one there: on the digits campaign's
development seeds (a 3x3 patch is 14 % of an 8x8 image, not much smaller than a natural mask)
the largest gain of any class on a clean fine-tune was 0.10, on a backdoored one 0.16-0.84
(``min_gap`` 0.25 was set from those seeds; docs/service-defaults.md). The success is pooled
over every source class of the held-out images: per source class, a trigger optimised on the
candidate's own decision boundary is too noisy to compare. :meth:`ReversedTrigger.apply` stamps a
found trigger on any batch (for a report, or the sensitivity test's ``triggers=``).

Limits: the norm is a mask area, so a trigger spread thinly over the whole image (a blend) needs
a large mask and is not an outlier; the sensitivity gate and the data screen cover it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_fraction, check_positive_float, check_positive_int
from poisonlab.defenses.gates.checks import check_models
from poisonlab.device import resolve_device
from poisonlab.inference import predict, to_input
from poisonlab.models.base import PoisonlabModel
from poisonlab.threads import compute_threads, estimate_flops

__all__ = ["NeuralCleanseReport", "ReversedTrigger", "anomaly_index", "neural_cleanse"]

_MAD_TO_SD = 1.4826
_COST_STEP = 1.5  # lambda_k is multiplied or divided by this after every step


@dataclass(frozen=True, eq=False)
class ReversedTrigger:
    """The smallest mask and pattern found for one target class, and its measured success."""

    target: int
    target_name: str
    mask: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1]
    pattern: np.ndarray = field(repr=False)  # (H, W, C) float32 in [0, 1]
    norm: float  # L1 norm of the mask, in pixels
    reached: bool  # some step reached ``target_success`` on the optimisation images

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Stamp the trigger on a uint8 (N, H, W, C) batch; uint8 out (a file could carry it)."""
        m = self.mask[None, :, :, None]
        out = (1.0 - m) * (x.astype(np.float32) / 255.0) + m * self.pattern[None]
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class NeuralCleanseReport:
    """Outcome of :func:`neural_cleanse`; per-class lists are indexed by class."""

    passed: bool
    class_names: tuple[str, ...]
    norms: list[float]
    anomaly_index: list[float]
    success: list[float]
    reference_success: list[float] | None
    flagged: list[str]
    anomaly_threshold: float
    min_gap: float
    n_optimised: int
    n_held_out: int
    steps: int
    seconds: float
    triggers: tuple[ReversedTrigger, ...] = field(repr=False, default=())

    def trigger_callables(self) -> dict[str, Any]:
        """``{"nc:<class>": callable}`` for every class whose search succeeded (sensitivity gate input)."""
        return {f"nc:{t.target_name}": t.apply for t in self.triggers if t.reached}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no masks)."""
        out = {k: v for k, v in self.__dict__.items() if k != "triggers"}
        out["class_names"] = list(self.class_names)
        return out


def anomaly_index(norms: np.ndarray) -> np.ndarray:
    """``(median - norm) / (1.4826 * MAD)`` per class: positive for masks smaller than typical."""
    norms = np.asarray(norms, dtype=np.float64)
    centre = float(np.median(norms))
    mad = _MAD_TO_SD * float(np.median(np.abs(norms - centre)))
    return (centre - norms) / max(mad, 1e-6 * max(centre, 1.0))


def _split(clean: Dataset, n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint optimisation and held-out index sets, each at most ``n_images``, classes mixed."""
    order = np.random.default_rng(seed).permutation(len(clean))
    half = min(n_images, max(1, len(order) // 2))
    return order[:half], order[half : half + n_images]


def _search(
    model: PoisonlabModel, pool: torch.Tensor, pool_y: torch.Tensor, k: int, *, steps: int,
    batch: int, lr: float, init_cost: float, target_success: float, seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Optimise one mask and pattern per class at once, each step on a random batch of the pool
    (the same images for every class); returns the best (mask, pattern, norm, reached)."""
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same start on every device
    n, c, h, w = min(batch, len(pool)), *pool.shape[1:]
    mask_logit = (torch.randn(k, 1, h, w, generator=gen) * 0.1 - 2.0).to(pool.device).requires_grad_(True)
    pattern_logit = torch.randn(k, c, h, w, generator=gen).to(pool.device).requires_grad_(True)
    opt = torch.optim.Adam([mask_logit, pattern_logit], lr=lr, betas=(0.5, 0.9))
    cost = torch.full((k,), init_cost, device=pool.device)
    targets = torch.arange(k, device=pool.device).repeat_interleave(n)
    best_norm = torch.full((k,), float(h * w), device=pool.device)
    best_mask, best_pattern = torch.zeros_like(mask_logit), torch.zeros_like(pattern_logit)
    for _ in range(steps):
        pick = torch.randperm(len(pool), generator=gen)[:n].to(pool.device)
        x, y = pool[pick], pool_y[pick]
        weight = (y.repeat(k) != targets).float()  # images already of class k teach nothing about k
        per_class = weight.view(k, n).sum(dim=1).clamp(min=1.0)
        mask, pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        stamped = (1 - mask[:, None]) * x[None] + (mask * pattern)[:, None]
        logits = model(stamped.reshape(k * n, c, h, w))
        ce = (F.cross_entropy(logits, targets, reduction="none") * weight).view(k, n).sum(dim=1) / per_class
        norm = mask.flatten(1).sum(dim=1)
        opt.zero_grad()
        (ce + cost * norm / (h * w)).sum().backward()
        opt.step()
        with torch.no_grad():
            hit = ((logits.argmax(dim=1) == targets).float() * weight).view(k, n).sum(dim=1) / per_class
            ok = hit >= target_success
            better = ok & (norm < best_norm)
            best_norm[better] = norm[better]
            best_mask[better], best_pattern[better] = mask[better], pattern[better]
            # the paper's dynamic lambda: push the mask smaller while it works, relax it while not
            cost = torch.where(ok, cost * _COST_STEP, cost / _COST_STEP).clamp(1e-4, 1e3)
    reached = best_norm < float(h * w)
    out = (best_mask[:, 0], best_pattern.permute(0, 2, 3, 1), best_norm, reached)
    return tuple(t.detach().cpu().numpy() for t in out)  # type: ignore[return-value]


def _success(model: PoisonlabModel, trigger: ReversedTrigger, held: Dataset, device: str) -> float:
    """Share of held-out images not of the target class that the trigger sends to it."""
    others = held.x[held.y != trigger.target]
    if len(others) == 0:
        return 0.0
    return float(np.mean(predict(model, trigger.apply(others), device=device) == trigger.target))


def _infected(
    j: int, index: np.ndarray, success: list[float], ref: list[float] | None, threshold: float, gap: float
) -> bool:
    """The decision rule of the module docstring for class ``j``."""
    if ref is None:
        return bool(index[j] > threshold)
    new = success[j] - ref[j]
    return new >= gap or (index[j] > threshold and new >= gap / 2)


def _check(model: object, clean: object, reference: object) -> None:
    if not isinstance(clean, Dataset) or len(clean) < 2:
        raise ValueError("neural_cleanse needs a poisonlab Dataset of at least 2 clean images")
    check_models(model, reference, clean)


def neural_cleanse(
    model: PoisonlabModel,
    clean: Dataset,
    *,
    reference: PoisonlabModel | None = None,
    n_images: int = 150,
    steps: int = 40,
    batch_size: int = 24,
    lr: float = 0.2,
    init_cost: float = 1.0,
    target_success: float = 0.9,
    anomaly_threshold: float = 2.0,
    min_gap: float = 0.25,
    seed: int = 0,
    device: str = "cpu",
) -> NeuralCleanseReport:
    """Reverse-engineer one trigger per class and flag classes reached by an outlying small mask.

    Parameters
    ----------
    model : PoisonlabModel
        The candidate under test (its weights are not changed).
    clean : Dataset
        Trusted clean images; up to ``n_images`` optimise the masks, up to ``n_images`` others
        measure their success.
    reference : PoisonlabModel, optional
        A trusted model of the same task (the serving model); see the module docstring.
    n_images, steps, batch_size : int
        The search's budget: images per half, Adam steps, images per step (shared by all classes:
        one step is ``batch_size x classes`` forward and backward passes).
    lr, init_cost : float
        Adam's step size on the mask and pattern logits; the initial ``lambda_k``.
    target_success : float
        Share of the optimisation images a mask must send to its class to count, in (0, 1].
    anomaly_threshold : float
        Anomaly index above which a class is an outlier (2 in the paper).
    min_gap : float
        With a reference: how much more often the trigger must succeed on ``model``, in (0, 1].
    seed : int
        Seeds the split and the initial masks (the search is deterministic on one thread).
    device : {"cpu", "cuda", "auto"}

    Returns
    -------
    NeuralCleanseReport

    Raises
    ------
    ValueError
        Bad parameters, a dataset too small, or models that do not fit it.
    """
    _check(model, clean, reference)
    n_images, steps = check_positive_int(n_images, "n_images"), check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr, init_cost = check_positive_float(lr, "lr"), check_positive_float(init_cost, "init_cost")
    target_success = check_fraction(target_success, "target_success")
    min_gap = check_fraction(min_gap, "min_gap")
    anomaly_threshold = check_positive_float(anomaly_threshold, "anomaly_threshold")
    start, k = time.perf_counter(), clean.num_classes
    fit_idx, held_idx = _split(clean, n_images, seed)
    held = clean.subset(held_idx if len(held_idx) else fit_idx)
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    # each parameter's own flag comes back afterwards: layers a network keeps frozen (airbench's
    # whitening filters and BatchNorm scales) must not come back trainable
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        x = to_input(clean.x[fit_idx], dev, channels_last=False)
        y = torch.as_tensor(clean.y[fit_idx], device=dev)
        flops = estimate_flops(model, model.input_shape) * min(batch_size, len(fit_idx)) * k * 3
        with compute_threads(flops, dev):
            masks, patterns, norms, reached = _search(
                model, x, y, k, steps=steps, batch=batch_size, lr=lr, init_cost=init_cost,
                target_success=target_success, seed=seed,
            )  # fmt: skip
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    names = clean.class_names
    triggers = tuple(
        ReversedTrigger(j, names[j], masks[j], patterns[j], float(norms[j]), bool(reached[j]))
        for j in range(k)
    )
    index = anomaly_index(norms)
    success = [_success(model, t, held, device) for t in triggers]
    ref = None if reference is None else [_success(reference, t, held, device) for t in triggers]
    flagged = [
        names[j]
        for j in range(k)
        if reached[j] and _infected(j, index, success, ref, anomaly_threshold, min_gap)
    ]
    return NeuralCleanseReport(
        passed=not flagged,
        class_names=tuple(names),
        norms=[round(float(v), 3) for v in norms],
        anomaly_index=[round(float(v), 3) for v in index],
        success=[round(v, 4) for v in success],
        reference_success=None if ref is None else [round(v, 4) for v in ref],
        flagged=flagged,
        anomaly_threshold=anomaly_threshold,
        min_gap=min_gap,
        n_optimised=len(fit_idx),
        n_held_out=len(held),
        steps=steps,
        seconds=round(time.perf_counter() - start, 3),
        triggers=triggers,
    )
