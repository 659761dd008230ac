"""Hidden-trigger backdoor: clean-label poisons whose features sit where triggered sources are.

Saha, Subramanya and Pirsiavash, "Hidden Trigger Backdoor Attacks", AAAI 2020,
arXiv:1910.00033. The attacker keeps the trigger secret during training: each poison is a
correctly labelled *target*-class image, perturbed inside an L-inf ball so that its
feature-layer representation matches a *source*-class image carrying the patch trigger. A model
fine-tuned (or trained) on the poisons learns "this region of feature space is the target
class"; at test time the patch moves source images into that region. The poisons themselves
show no trigger, so visual inspection and label checks see nothing.

Per step the poisons are paired one-to-one with a fresh random sample of triggered source
images by the Hungarian algorithm on feature distances (the paper pairs each poison with its
closest triggered source; the one-to-one pairing keeps all poisons from collapsing onto the same
few sources), and the squared feature distance is minimised with Adam on the perturbation,
projected into the ball after every step.

The chapter's parameters (ART's ``HiddenTriggerBackdoor``) are the defaults: an 8x8 patch at
``(H - 8 - 5, W - 8 - 5)``, ``eps = 16/255``, the dense penultimate layer, learning rate 0.01.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from poisonlab.attacks.base import ATTACKS, CLASS, TRIGGER, Perturbation, resolve_class
from poisonlab.attacks.crafted import Crafted, CraftedAttack
from poisonlab.attacks.crafting import Surrogate, project, to_tensor
from poisonlab.data.dataset import Dataset
from poisonlab.params import NON_EMPTY_STR, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, InstanceOf, check_param
from poisonlab.triggers import default_trigger_path, insert_image

__all__ = ["HiddenTriggerBackdoor", "chapter_patch_trigger"]

#: the chapter's patch: side length and distance from the bottom-right corner, in pixels
_DEFAULT_PATCH, _DEFAULT_OFFSET = 8, 5


def chapter_patch_trigger(patch_size: int = _DEFAULT_PATCH, offset: int = _DEFAULT_OFFSET) -> Perturbation:
    """The chapter's hidden trigger: the shipped ``htbd.png`` checker, ``patch_size`` pixels
    square, pasted opaque with its top-left corner at ``(H - patch_size - offset)`` in both axes.

    Returns a function of a uint8 or float (N, H, W, C) batch (same shape and dtype out).
    """
    check_param("patch_size", patch_size, POSITIVE_INT)
    check_param("offset", offset, NON_NEGATIVE_INT)

    def patch(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[1], x.shape[2]
        row, col = h - patch_size - offset, w - patch_size - offset
        if row < 0 or col < 0:
            # named as a call: an attack using this trigger has no patch_size or offset of its own
            raise ValueError(
                f"chapter_patch_trigger(patch_size={patch_size}, offset={offset}): the patch does "
                f"not fit {h}x{w} images; lower patch_size or offset"
            )
        return insert_image(
            x,
            default_trigger_path("htbd"),
            random=False,
            x_shift=col,
            y_shift=row,
            size=(patch_size, patch_size),
            mode=None,
            blend=1.0,
        )

    patch.__name__ = f"htbd_patch_{patch_size}px"
    return patch


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class HiddenTriggerBackdoor(CraftedAttack):
    """Clean-label poisons that hide a patch backdoor in feature space (Saha et al. 2020).

    Parameters
    ----------
    model, target, count, fraction, eps, steps, batch_size, device, seed
        As for every crafted attack (:class:`~poisonlab.attacks.crafted.CraftedAttack`); here
        ``eps`` defaults to 16/255 (the chapter's), ``steps`` are Adam steps per poison chunk and
        ``batch_size`` poisons are optimised together (and triggered sources sampled per step).
    source : str or int
        Class whose *triggered* images should be classified as ``target`` after training.
    trigger : callable or list of callables, optional
        The secret trigger applied to source images (uint8 NHWC -> same); default
        :func:`chapter_patch_trigger` (8x8 at ``H - 13``).
    trigger_name : str
        Label of the trigger in descriptions.
    feature_layer : str
        ``"penultimate"`` (the dense layer, the chapter's ``feature_layer``), ``"logits"`` or a
        module name such as ``"blocks.2"``.
    lr : float
        Adam learning rate on the pixel perturbation ([0, 1] units), cosine-decayed to 10 %.
    max_sources : int
        At most this many source-class training images (a seeded random subset) form the pool of
        triggered sources; bounds the one-off feature pass (all 5,000 CIFAR airplanes would
        take seconds on a CPU for no gain in the pairing).

    Notes
    -----
    ``CraftReport.loss_*`` is the mean squared feature distance between each poison and its
    nearest triggered source image (lower is better for the attacker).
    """

    name = "hidden_trigger"
    needs_source_class = True
    needs_trigger = True
    parameter_constraints = {
        **CraftedAttack.parameter_constraints,
        "source": [CLASS],
        "trigger": [None, TRIGGER],
        "trigger_name": [NON_EMPTY_STR],
        "feature_layer": [InstanceOf(str, "a layer name (str)")],
        "lr": [POSITIVE],
        "max_sources": [POSITIVE_INT],
    }

    source: str | int
    trigger: Perturbation | Sequence[Perturbation] | None = None
    trigger_name: str = "htbd-patch"
    feature_layer: str = "penultimate"
    steps: int = 300
    lr: float = 0.01
    max_sources: int = 1000

    def _check(self) -> None:
        super()._check()
        h, w = tuple(self.model.input_shape)[:2]
        if self.trigger is None and min(h, w) < _DEFAULT_PATCH + _DEFAULT_OFFSET:
            # The default patch's own error would name chapter_patch_trigger's arguments, which
            # this constructor does not have; say what to pass instead.
            raise ValueError(
                f"trigger: the default trigger (the chapter's {_DEFAULT_PATCH}x{_DEFAULT_PATCH} patch "
                f"{_DEFAULT_OFFSET} px from the corner) does not fit the model's {h}x{w} images; pass "
                "a trigger that fits, e.g. trigger=chapter_patch_trigger(patch_size=2, offset=1)"
            )

    @property
    def resolved_trigger(self) -> Perturbation | Sequence[Perturbation]:
        return self.trigger if self.trigger is not None else chapter_patch_trigger()

    def _craft(self, surrogate: Surrogate, clean: Dataset, target: int, indices: np.ndarray) -> Crafted:
        sources = self._triggered_sources(clean, target)
        source_feats = surrogate.batched_features(sources)
        gen = torch.Generator().manual_seed(self.seed)
        poisons, sums = self._in_chunks(
            clean.x[indices], lambda bases: self._craft_chunk(surrogate, bases, source_feats, gen)
        )
        extras = {"feature_layer": self.feature_layer, "eps": self.eps}
        return Crafted(poisons, sums[0] / indices.size, sums[1] / indices.size, extras)

    def _triggered_sources(self, clean: Dataset, target: int) -> np.ndarray:
        """A seeded sample of at most ``max_sources`` source-class images, trigger stamped."""
        src = resolve_class(clean, self.source, "source")
        if src == target:
            raise ValueError(f"source and target are the same class {clean.class_names[src]!r}")
        pool = np.flatnonzero(clean.y == src)
        if pool.size == 0:
            raise ValueError(f"source class {clean.class_names[src]!r} has no training images")
        rng = np.random.default_rng([self.seed, 1])  # independent of the poison choice
        chosen = np.sort(rng.choice(pool, size=min(pool.size, self.max_sources), replace=False))
        return self.at_test_time(clean.x[chosen])

    def _describe(self, clean: Dataset, target: int, n: int) -> str:
        names = clean.class_names
        src = names[resolve_class(clean, self.source, "source")]
        return (
            f"hidden_trigger[{self.trigger_name}]: {n} poisons of {names[target]!r} for triggered "
            f"{src!r} (eps {self.eps * 255:.0f}/255, layer {self.feature_layer})"
        )

    def _craft_chunk(
        self,
        surrogate: Surrogate,
        bases_u8: np.ndarray,
        source_feats: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Optimise one chunk of poisons; returns (uint8 poisons, [initial, final] loss summed)."""
        base = to_tensor(bases_u8, surrogate.device)
        x = base.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps, eta_min=self.lr * 0.1)
        loss_initial = self._nearest_loss(surrogate, base, source_feats)
        for _ in range(self.steps):
            feats = surrogate.features(x)
            pairs = self._pair(feats.detach(), source_feats, gen)
            loss = (feats - pairs).pow(2).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.copy_(project(x, base, self.eps))
        poisons = self._quantize(x, bases_u8)
        loss_final = self._nearest_loss(surrogate, to_tensor(poisons, surrogate.device), source_feats)
        return poisons, np.array([loss_initial, loss_final]) * len(poisons)

    @staticmethod
    def _nearest_loss(surrogate: Surrogate, x: torch.Tensor, source_feats: torch.Tensor) -> float:
        """Mean squared distance of each poison to its nearest triggered source (no sampling)."""
        with torch.no_grad():
            d = torch.cdist(surrogate.features(x), source_feats).pow(2)
            return float(d.min(dim=1).values.mean())

    @staticmethod
    def _pair(feats: torch.Tensor, source_feats: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Features of triggered sources matched one-to-one to ``feats`` (Hungarian on a sample)."""
        n, pool = feats.shape[0], source_feats.shape[0]
        if pool >= n:
            sample = torch.randperm(pool, generator=gen)[:n]
        else:  # fewer sources than poisons: sample with replacement
            sample = torch.randint(0, pool, (n,), generator=gen)
        candidates = source_feats[sample]
        cost = torch.cdist(feats, candidates).pow(2).cpu().numpy()
        rows, cols = linear_sum_assignment(cost)
        order = np.empty(n, dtype=np.int64)
        order[rows] = cols
        return candidates[torch.from_numpy(order)]
