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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from poisonlab.attacks.base import (
    PoisoningAttack,
    apply_perturbation,
    check_class_spec,
    check_count_fraction,
    check_perturbation,
    check_seed,
    resolve_class,
)
from poisonlab.attacks.crafting import (
    CraftedPoisonResult,
    CraftReport,
    Surrogate,
    check_eps,
    check_model,
    check_positive,
    check_steps,
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
from poisonlab.device import resolve_device
from poisonlab.models.base import PoisonlabModel
from poisonlab.triggers import default_trigger_path, insert_image

__all__ = ["HiddenTriggerBackdoor", "chapter_patch_trigger"]

Perturbation = Callable[[np.ndarray], np.ndarray]


def chapter_patch_trigger(patch_size: int = 8, offset: int = 5) -> Perturbation:
    """The chapter's hidden trigger: the shipped ``htbd.png`` checker, ``patch_size`` pixels
    square, pasted opaque with its top-left corner at ``(H - patch_size - offset)`` in both axes.

    Returns a function of a uint8 or float (N, H, W, C) batch (same shape and dtype out).
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be an int >= 1, got {patch_size!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")

    def patch(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[1], x.shape[2]
        row, col = h - patch_size - offset, w - patch_size - offset
        if row < 0 or col < 0:
            raise ValueError(
                f"a {patch_size}x{patch_size} patch {offset} px from the corner does not fit "
                f"{h}x{w} images; lower patch_size or offset"
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


@dataclass(frozen=True, kw_only=True, eq=False)
class HiddenTriggerBackdoor(PoisoningAttack):
    """Clean-label poisons that hide a patch backdoor in feature space (Saha et al. 2020).

    Parameters
    ----------
    model : PoisonlabModel
        Surrogate to craft against (white box: the victim's pre-trained weights). Not modified.
    source : str or int
        Class whose *triggered* images should be classified as ``target`` after training.
    target : str or int
        Attacker's class; the poisons are training images of this class, labels unchanged.
    count, fraction : int or float
        Budget: number of poisons, or share of the whole training set; exactly one.
    trigger : callable or list of callables, optional
        The secret trigger applied to source images (uint8 NHWC -> same); default
        :func:`chapter_patch_trigger` (8x8 at ``H - 13``).
    trigger_name : str
        Label of the trigger in descriptions.
    eps : float
        L-inf radius on the [0, 1] scale, default 16/255 (the chapter's).
    feature_layer : str
        ``"penultimate"`` (the dense layer, the chapter's ``feature_layer``), ``"logits"`` or a
        module name such as ``"blocks.2"``.
    steps : int
        Adam steps per poison chunk.
    lr : float
        Adam learning rate on the pixel perturbation ([0, 1] units), cosine-decayed to 10 %.
    batch_size : int
        Poisons optimised together (and triggered sources sampled per step).
    max_sources : int
        At most this many source-class training images (a seeded random subset) form the pool of
        triggered sources; bounds the one-off feature pass (all 5,000 CIFAR airplanes would
        take seconds on a CPU for no gain in the pairing).
    device : {"auto", "cpu", "cuda"}
    seed : int
        Seeds the choice of poisons and the source sampling.

    Notes
    -----
    ``CraftReport.loss_*`` is the mean squared feature distance between each poison and its
    nearest triggered source image (lower is better for the attacker).
    """

    name = "hidden_trigger"

    model: PoisonlabModel
    source: str | int
    target: str | int
    count: int | None = None
    fraction: float | None = None
    trigger: Perturbation | Sequence[Perturbation] | None = None
    trigger_name: str = "htbd-patch"
    eps: float = 16 / 255
    feature_layer: str = "penultimate"
    steps: int = 300
    lr: float = 0.01
    batch_size: int = 250
    max_sources: int = 1000
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        check_model(self.model)
        check_class_spec(self.source, "source")
        check_class_spec(self.target, "target")
        if self.source == self.target:
            raise ValueError(f"source and target must differ, got both {self.source!r}")
        check_count_fraction(self.count, self.fraction, require_one=True)
        if self.trigger is not None:
            check_perturbation(self.trigger, "trigger")
        if not isinstance(self.trigger_name, str) or not self.trigger_name:
            raise ValueError(f"trigger_name must be a non-empty string, got {self.trigger_name!r}")
        check_eps(self.eps)
        if not isinstance(self.feature_layer, str):
            raise ValueError(f"feature_layer must be a string, got {self.feature_layer!r}")
        check_steps(self.steps)
        check_positive(self.lr, "lr")
        check_steps(self.batch_size, "batch_size")
        check_steps(self.max_sources, "max_sources")
        resolve_device(self.device)
        check_seed(self.seed)

    @property
    def resolved_trigger(self) -> Perturbation | Sequence[Perturbation]:
        return self.trigger if self.trigger is not None else chapter_patch_trigger()

    def at_test_time(self, images: np.ndarray) -> np.ndarray:
        """The attacker's test-time move: stamp the secret trigger on ``images`` (uint8 NHWC)."""
        return apply_perturbation(self.resolved_trigger, images)

    def poison(self, clean: Dataset) -> CraftedPoisonResult:
        """Perturb ``count`` target-class images of ``clean`` (labels kept; ``clean`` untouched)."""
        src = resolve_class(clean, self.source, "source")
        tgt, idx = select_poisons(
            clean, self.target, count=self.count, fraction=self.fraction, seed=self.seed
        )
        if src == tgt:
            raise ValueError(f"source and target are the same class {clean.class_names[src]!r}")
        pool = np.flatnonzero(clean.y == src)
        if pool.size == 0:
            raise ValueError(f"source class {clean.class_names[src]!r} has no training images")
        rng = np.random.default_rng([self.seed, 1])  # independent of the poison choice
        sources = clean.x[np.sort(rng.choice(pool, size=min(pool.size, self.max_sources), replace=False))]
        self.at_test_time(sources[:1])  # a trigger that does not fit fails now, not after crafting
        with measure() as clock:  # the surrogate copy counts, as in the other attacks
            surrogate = Surrogate(self.model, device=self.device, feature_layer=self.feature_layer)
            surrogate.check_images(clean.x[:1], "training images")
            source_feats = surrogate.batched_features(self.at_test_time(sources))
            gen = torch.Generator().manual_seed(self.seed)
            chunks = [
                self._craft_chunk(surrogate, clean.x[idx[s]], source_feats, gen)
                for s in minibatches(idx.size, self.batch_size)
            ]
            poisons = np.concatenate([c[0] for c in chunks])
        n = idx.size
        report = CraftReport(
            seconds=clock.seconds,
            peak_rss_mib=clock.peak_rss_mib,
            steps=self.steps,
            loss_initial=float(sum(c[1] * len(c[0]) for c in chunks) / n),
            loss_final=float(sum(c[2] * len(c[0]) for c in chunks) / n),
            max_linf=max_linf(poisons, clean.x[idx]),
            extras={"feature_layer": self.feature_layer, "eps": self.eps},
        )
        names = clean.class_names
        return replace_samples(
            clean,
            idx,
            poisons,
            tag=f"hidden_trigger[{self.trigger_name}]",
            description=(
                f"hidden_trigger[{self.trigger_name}]: {n} poisons of {names[tgt]!r} for triggered "
                f"{names[src]!r} (eps {self.eps * 255:.0f}/255, layer {self.feature_layer})"
            ),
            report=report,
        )

    def _craft_chunk(
        self,
        surrogate: Surrogate,
        bases_u8: np.ndarray,
        source_feats: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[np.ndarray, float, float]:
        """Optimise one chunk of poisons; returns (uint8 poisons, initial loss, final loss)."""
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
        poisons = quantize_in_ball(x, bases_u8, self.eps)
        final = to_tensor(poisons, surrogate.device)
        return poisons, loss_initial, self._nearest_loss(surrogate, final, source_feats)

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
