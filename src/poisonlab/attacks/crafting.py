"""Shared machinery of the optimisation-based (clean-label) poisoning attacks.

Hidden-trigger backdoor, feature collision, clean-label backdoor and gradient matching all
perturb a few *correctly labelled* training images of the attacker's class inside an L-inf ball
of radius ``eps`` (pixel scale [0, 1]) so that a surrogate model ("white box": the victim's own
pre-trained weights; "grey box": a model trained on similar data) is steered toward the
attacker's goal. Their common base class (the ``poison()`` template) is
:class:`poisonlab.attacks.crafted.CraftedAttack`; this module holds the machinery they share:

* :data:`EPS`, :data:`MODEL` and :data:`VICTIMS` - constraints of the shared parameters in the
  vocabulary of :mod:`poisonlab.params`, and :func:`check_feature_layer`;
* :class:`CraftReport` and :class:`CraftedPoisonResult` - the poisoned set plus the time, peak
  memory and objective of the crafting, for benchmark tables and reports;
* :class:`Surrogate` - an eval-mode, frozen copy of the model on the crafting device, with a
  selectable feature layer (``"penultimate"``, ``"logits"`` or any named module);
* float <-> uint8 conversion that keeps the integer poisons inside the eps ball, a projection
  step, and finite-value checks (ART issue #1252: NaN poisons from a zero-norm division);
* :func:`replace_samples` - writes the poisons in place, labels unchanged, poison mask set.

Threat model and vocabulary follow Schwarzschild et al., "Just How Toxic is Data Poisoning? A
Unified Benchmark for Backdoor and Data Poisoning Attacks", ICML 2021 (arXiv:2006.12557): the
*target* class is the label the attacker wants; the poisons are training images of that class;
*victim* images (their "target instances") are the test images to be misclassified.
"""

from __future__ import annotations

import copy
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import torch
from torch import nn

from poisonlab.attacks.base import PoisonResult, choose, make_result, resolve_class, resolve_count
from poisonlab.data.dataset import Dataset
from poisonlab.device import resolve_device
from poisonlab.models.base import PoisonlabModel
from poisonlab.params import InstanceOf, Interval, Satisfies, check_param, describe_value

__all__ = [
    "EPS",
    "FEATURE_LAYERS",
    "MODEL",
    "VICTIMS",
    "CraftReport",
    "CraftedPoisonResult",
    "Surrogate",
    "check_feature_layer",
    "check_finite",
    "check_victims",
    "max_linf",
    "measure",
    "minibatches",
    "project",
    "quantize_in_ball",
    "replace_samples",
    "select_poisons",
    "to_tensor",
]

FEATURE_LAYERS = ("penultimate", "logits")


@dataclass(frozen=True)
class CraftReport:
    """How the crafting went.

    Attributes
    ----------
    seconds : float
        Wall time of the optimisation (surrogate copies and dataset writes included).
    peak_rss_mib : float
        Peak resident memory of the process after crafting, MiB (a process-wide high-water mark).
    steps : int
        Optimisation steps taken per restart.
    loss_initial, loss_final : float
        The attack's objective (documented per attack; lower is better for the attacker) on the
        unperturbed poisons and on the final uint8 poisons.
    max_linf : int
        Largest absolute pixel change over all poisons, on the 0-255 scale (<= eps * 255 for the
        perturbation-only attacks; a visible trigger added afterwards may exceed it).
    extras : dict
        Attack-specific numbers (e.g. restarts and the loss of each).
    """

    seconds: float
    peak_rss_mib: float
    steps: int
    loss_initial: float
    loss_final: float
    max_linf: int
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **self.extras,  # first: the core fields below must not be overwritten by an extra
            "seconds": self.seconds,
            "peak_rss_mib": self.peak_rss_mib,
            "steps": self.steps,
            "loss_initial": self.loss_initial,
            "loss_final": self.loss_final,
            "max_linf": self.max_linf,
        }


@dataclass(frozen=True, repr=False)  # repr=False: keep PoisonResult's concise repr
class CraftedPoisonResult(PoisonResult):
    """A :class:`PoisonResult` with the :class:`CraftReport` of an optimisation-based attack."""

    report: CraftReport | None = None

    def _repr_fields(self) -> dict[str, object]:
        fields = super()._repr_fields()
        if self.report is not None:
            fields |= {
                "seconds": round(self.report.seconds, 2),
                "loss": f"{self.report.loss_initial:.4g} -> {self.report.loss_final:.4g}",
                "max_linf": self.report.max_linf,
            }
        return fields


# ------------------------------------------------------------------------------ parameter checks
#: an L-inf radius on the [0, 1] pixel scale
EPS = Interval(Real, 0, 1, closed="right", note="pixel scale, e.g. 16/255")
#: the surrogate to craft against
MODEL = InstanceOf(PoisonlabModel, "a poisonlab model (PoisonlabModel) to craft against")
#: uint8 victim image(s), (H, W, C) or (M, H, W, C)
VICTIMS = Satisfies(
    lambda v: isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim in (3, 4),
    "a uint8 image (H, W, C) or batch (M, H, W, C)",
)


def check_feature_layer(model: nn.Module, layer: object) -> str:
    """``layer`` names a feature layer of ``model``: one of :data:`FEATURE_LAYERS` or a module name.

    Cheap (no copy of the model), so attacks check it when they are configured.
    """
    names = [n for n, _ in model.named_modules() if n]
    if not isinstance(layer, str) or (layer not in FEATURE_LAYERS and layer not in names):
        raise ValueError(
            f"feature_layer must be one of {list(FEATURE_LAYERS)} or a module name of "
            f"{type(model).__name__} ({', '.join(names[:12])}, ...), got {describe_value(layer)}"
        )
    return layer


def check_victims(images: object, param: str = "victims") -> np.ndarray:
    """Victim images as a batch: uint8 (M, H, W, C) with M >= 1 (one (H, W, C) image gets M = 1)."""
    check_param(param, images, VICTIMS)
    batch = images[None] if images.ndim == 3 else images
    if batch.shape[0] == 0:
        raise ValueError(f"{param} must hold at least one image, got 0")
    return batch


def check_finite(x: torch.Tensor, what: str, step_param: str | None = "lr") -> None:
    """Raise instead of writing NaN/inf poisons (the failure of ART issue #1252).

    ``step_param`` is the attack's step-size parameter the message suggests lowering (``None``
    when no step is involved, e.g. a feature of the unmodified victim).
    """
    if not bool(torch.isfinite(x).all()):
        advice = "check the model" if step_param is None else f"lower {step_param} or check the model"
        raise ValueError(f"{what} became non-finite during crafting; {advice}")


# --------------------------------------------------------------------------- tensors and the ball
def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], channels_last (faster convolutions
    on CPU), a fresh leaf tensor ready for autograd."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    return t.float().div(255.0).contiguous(memory_format=torch.channels_last)


def project(x: torch.Tensor, base: torch.Tensor, eps: float | None) -> torch.Tensor:
    """Clamp ``x`` into the L-inf ball of radius ``eps`` around ``base`` and into [0, 1]."""
    if eps is not None:
        x = torch.minimum(torch.maximum(x, base - eps), base + eps)
    return x.clamp(0.0, 1.0)


def quantize_in_ball(
    x: torch.Tensor, base_u8: np.ndarray, eps: float | None, step_param: str | None = "lr"
) -> np.ndarray:
    """Float poisons (N, C, H, W) -> uint8 (N, H, W, C), rounded and kept inside the integer ball.

    The ball on the 0-255 scale has radius ``floor(eps * 255)`` (16 for eps = 16/255), so the
    stored poison never exceeds the budget after rounding. ``step_param`` as for
    :func:`check_finite`.
    """
    check_finite(x, "poison", step_param)
    pixels = np.rint(x.detach().permute(0, 2, 3, 1).cpu().numpy() * 255.0)
    if eps is not None:
        r = int(np.floor(eps * 255.0 + 1e-6))
        base = base_u8.astype(np.int16)
        pixels = np.clip(pixels, base - r, base + r)
    return np.clip(pixels, 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------- surrogate
class Surrogate:
    """Frozen eval-mode copy of a model for crafting, with a selectable feature layer.

    Parameters
    ----------
    model : PoisonlabModel
        Not modified (a deep copy is moved to ``device``).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    feature_layer : str
        ``"penultimate"`` (``model.features``), ``"logits"``, or the name of any sub-module in
        ``model.named_modules()`` (e.g. ``"blocks.2"`` for the third conv block of the chapter's
        CNN); its output is flattened to (N, D).
    trainable : bool
        Keep each parameter's own ``requires_grad`` (gradient matching needs the gradients of
        what the victim trains; ValueError when nothing does), else freeze all. Never sets one
        True: airbench's frozen whitening and BatchNorm scales (arXiv:2404.00498) stay frozen.
    """

    def __init__(
        self,
        model: PoisonlabModel,
        *,
        device: str = "auto",
        feature_layer: str = "penultimate",
        trainable: bool = False,
    ) -> None:
        check_param("model", model, MODEL)
        check_feature_layer(model, feature_layer)
        self.device = resolve_device(device)
        self.net = copy.deepcopy(model).to(self.device, memory_format=torch.channels_last).eval()
        if not trainable:
            self.net.requires_grad_(False)  # the copy's flags: the caller's model keeps its own
        elif not any(p.requires_grad for p in self.net.parameters()):
            raise ValueError(
                "trainable surrogate: every parameter of the model is frozen (requires_grad False)"
            )
        modules = dict(self.net.named_modules())
        self.feature_layer = feature_layer
        self._module: nn.Module | None = None if feature_layer in FEATURE_LAYERS else modules[feature_layer]

    def check_images(self, images: np.ndarray, what: str) -> None:
        """Raise ValueError unless ``images`` is uint8 (N, H, W, C) of the model's input shape."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            got = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
            raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got {got}")
        if tuple(images.shape[1:]) != tuple(self.net.input_shape):
            raise ValueError(
                f"{what}: the model expects images of shape {tuple(self.net.input_shape)} (H, W, C), "
                f"got {tuple(images.shape[1:])}"
            )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the feature layer, flattened to (N, D)."""
        if self.feature_layer == "penultimate":
            return self.net.features(x)
        if self.feature_layer == "logits":
            return self.net(x)
        captured: list[torch.Tensor] = []
        # clone: a later in-place ReLU would otherwise overwrite the captured activations
        handle = self._module.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))  # type: ignore[union-attr]
        try:
            self.net(x)
        finally:
            handle.remove()
        return captured[0].flatten(1)

    def batched_features(self, images: np.ndarray, batch_size: int = 500) -> torch.Tensor:
        """Features of uint8 images without gradients, (N, D)."""
        with torch.no_grad():
            parts = [
                self.features(to_tensor(images[i : i + batch_size], self.device))
                for i in range(0, len(images), batch_size)
            ]
        return torch.cat(parts)


# --------------------------------------------------------------------------------- measurement
def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


@dataclass
class _Clock:
    start: float
    seconds: float = 0.0
    peak_rss_mib: float = 0.0


@contextmanager
def measure() -> Iterator[_Clock]:
    """Time a crafting run and read the process' peak RSS at its end."""
    clock = _Clock(start=time.perf_counter())
    try:
        yield clock
    finally:
        clock.seconds = time.perf_counter() - clock.start
        clock.peak_rss_mib = _peak_rss_mib()


# ------------------------------------------------------------------------------ dataset writing
def replace_samples(
    clean: Dataset,
    indices: np.ndarray,
    poisons: np.ndarray,
    *,
    tag: str,
    description: str,
    report: CraftReport,
) -> CraftedPoisonResult:
    """``clean`` with ``poisons`` written over ``indices``: labels unchanged, poison mask set.

    The per-sample ``source`` tags stay as they were: a clean-label poison arrives through the
    same channel as the image it replaces, so provenance must not give it away for free.
    """
    x = clean.x.copy()
    x[indices] = poisons
    mask = clean.mask_or_clean().copy()
    mask[indices] = True
    out = clean.replace(x=x, poison_mask=mask, name=f"{clean.name}+{tag}")
    base = make_result(out, description)
    return CraftedPoisonResult(
        dataset=base.dataset,
        poison_indices=base.poison_indices,
        poisoned_only=base.poisoned_only,
        description=base.description,
        report=report,
    )


def max_linf(poisons: np.ndarray, originals: np.ndarray) -> int:
    """Largest absolute pixel change, 0-255 scale."""
    if poisons.size == 0:
        return 0
    return int(np.abs(poisons.astype(np.int16) - originals.astype(np.int16)).max())


def minibatches(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` (>= 1) covering ``range(n)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def select_poisons(
    clean: Dataset, target: str | int, *, count: int | None, fraction: float | None, seed: int
) -> tuple[int, np.ndarray]:
    """The target class index and the sorted indices of the training images to perturb.

    ``count`` poisons, or ``fraction`` of the whole training set (the budget convention of
    Schwarzschild et al.), drawn without replacement from the target class.
    """
    tgt = resolve_class(clean, target, "target")
    candidates = np.flatnonzero(clean.y == tgt)
    k = resolve_count(
        count=count,
        fraction=fraction,
        base=len(clean),
        available=candidates.size,
        what=f"target class {clean.class_names[tgt]!r}",
    )
    return tgt, choose(np.random.default_rng(seed), candidates, k)
