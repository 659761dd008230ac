"""The detection benchmark's grid: its cells and, for each cell, one seeded poisoning case.

A *cell* is (seed, attack family, target mode, poison rate), or the no-poison control of a seed.
Its *case* is drawn from ``numpy.random.default_rng([seed, crc32(family/target)])``: the target
class, the patch's side, colours and position, the blend ratio and key, the watermark's logo, the
warp field's seed.  All rates of one (seed, family, target mode) share that draw, so a row of the
report compares rates on the same trigger; which samples are poisoned is drawn per rate.  Nothing
depends on the other cells of the config, so adding a family never changes another family's cases.

Every case poisons through the library's attacks (:func:`poisonlab.attacks.factory.get_attack`),
so every poisoned set carries its ground-truth ``poison_mask``:

* patch / blended / watermark / warp, all-to-one: ``backdoor`` (BadNets, Gu et al. 2017) over the
  non-target classes, poisons replacing their originals; all-to-all (label ``k -> k + 1``):
  ``all_to_all`` (:mod:`poisonlab.attacks.all_to_all`);
* sig: the sinusoid (Barni et al. 2019) stamped on target-class images, labels kept
  (``all_to_all`` with ``shift=0``);
* clean_label_pgd: ``clean_label_backdoor`` (Turner et al. 2019) against the seed's clean model;
* label_flip: ``label_flip`` of a share of one class to another; random_flip:
  ``random_label_flip`` of a share of the training set; control: ``none``.

A rate is a share of the training set, except for label_flip (a share of the source class);
clean-label families cannot poison more images than the target class holds, and the record keeps
the count actually poisoned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

import poisonlab.attacks.all_to_all  # noqa: F401  (registers the all_to_all attack)
from poisonlab.attacks.base import Perturbation, PoisoningAttack
from poisonlab.attacks.factory import get_attack
from poisonlab.data.dataset import Dataset
from poisonlab.experiments.detection.config import (
    CLEAN_LABEL_FAMILIES,
    TARGET_MODES,
    TRIGGER_FAMILIES,
    AttackSettings,
    DetectionConfig,
)
from poisonlab.models.base import PoisonlabModel
from poisonlab.triggers import get_trigger

__all__ = ["Case", "Cell", "StampPatch", "build_trigger", "draw_params", "grid", "make_case", "poison_count"]


@dataclass(frozen=True)
class Cell:
    """One cell of the grid; ``family`` is ``"control"`` (and ``rate`` None) for the no-poison run."""

    seed: int
    family: str
    target: str
    rate: float | None

    @property
    def id(self) -> str:
        """Stable name, e.g. ``"s3-patch-all_to_one-0.01"`` or ``"s3-control"``."""
        if self.family == "control":
            return f"s{self.seed}-control"
        return f"s{self.seed}-{self.family}-{self.target}-{self.rate:g}"


def family_targets(family: str, targets: list[str]) -> tuple[str, ...]:
    """Target modes of a family: the configured ones for trigger families, else the family's own."""
    if family in TRIGGER_FAMILIES:
        return tuple(t for t in TARGET_MODES if t in targets)
    if family in CLEAN_LABEL_FAMILIES:
        return ("all_to_one",)
    return ("one_to_one",) if family == "label_flip" else ("random",)


def grid(cfg: DetectionConfig) -> list[Cell]:
    """Every cell of the config, seed by seed: the control first, then family x target x rate."""
    cells = []
    for seed in cfg.seeds.values:
        if cfg.controls:
            cells.append(Cell(seed, "control", "none", None))
        for family in cfg.families:
            for target in family_targets(family, cfg.targets):
                cells.extend(Cell(seed, family, target, rate) for rate in cfg.rates)
    return cells


def poison_count(rate: float, base: int) -> int:
    """``rate * base`` rounded half up, at least 1."""
    return max(1, int(np.floor(rate * base + 0.5)))


@dataclass(frozen=True, eq=False)
class StampPatch:
    """A local patch trigger: fixed pixels pasted at a fixed position of every image.

    ``pixels`` uint8 (s, s, C); the trigger maps uint8 (N, H, W, C) to a new uint8 array of the
    same shape with ``out[:, top:top+s, left:left+s] = pixels`` (one slice assignment, no loop).
    """

    pixels: np.ndarray
    top: int
    left: int
    name: str = "patch"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"patch: expected uint8 (N, H, W, C) images, got {getattr(x, 'shape', x)!r}")
        side = self.pixels.shape[0]
        out = x.copy()
        out[:, self.top : self.top + side, self.left : self.left + side, :] = self.pixels
        return out


def _case_rng(cell: Cell, *, per_rate: bool = False) -> np.random.Generator:
    key = f"{cell.family}/{cell.target}" + (f"/{cell.rate}" if per_rate else "")
    return np.random.default_rng([cell.seed, zlib.crc32(key.encode())])


def _draw_patch(rng: np.random.Generator, sizes: tuple[int, int], hwc: tuple[int, int, int]) -> dict:
    height, width, channels = hwc
    side = int(rng.integers(sizes[0], min(sizes[1], height, width) + 1))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    pixels = rng.integers(0, 256, size=(side, side, channels)).tolist()
    return {"kind": "patch", "size": side, "top": top, "left": left, "pixels": pixels}


def _draw_trigger(rng: np.random.Generator, family: str, s: AttackSettings, train: Dataset) -> dict:
    """The trigger of a case as a JSON-ready mapping (see :func:`build_trigger`)."""
    if family in ("patch", "clean_label_pgd"):
        return _draw_patch(rng, s.patch.size, train.image_shape)
    if family == "blended":
        alpha = float(rng.uniform(*s.blended.alpha))
        if rng.random() < s.blended.image_share:
            return {"kind": "blended", "alpha": alpha, "key": "image", "index": int(rng.integers(len(train)))}
        return {"kind": "blended", "alpha": alpha, "key": "noise", "seed": int(rng.integers(2**31))}
    if family == "watermark":
        w = s.watermark
        alpha, seed = float(rng.uniform(*w.alpha)), int(rng.integers(2**31))
        return {"kind": "watermark", "alpha": alpha, "cells": w.cells, "density": w.density, "seed": seed}
    if family == "warp":
        return {
            "kind": "warp",
            "grid": s.warp.grid,
            "strength": s.warp.strength,
            "seed": int(rng.integers(2**31)),
        }
    return {"kind": "sinusoid", "delta": s.sig.delta, "frequency": s.sig.frequency}


def draw_params(cell: Cell, train: Dataset, settings: AttackSettings) -> dict[str, Any]:
    """The case of ``cell`` as a JSON-ready mapping: classes, trigger, selection seed.

    Deterministic: the same cell, training set and settings always give the same mapping.
    """
    rng = _case_rng(cell)
    k = train.num_classes
    params: dict[str, Any] = {}
    if cell.family == "label_flip":
        source, target = rng.choice(k, size=2, replace=False)
        params |= {"source": int(source), "target": int(target)}
    elif cell.target == "all_to_one":
        params["target"] = int(rng.integers(k))
    elif cell.target == "all_to_all":
        params["shift"] = 1
    if cell.family in (*TRIGGER_FAMILIES, *CLEAN_LABEL_FAMILIES):
        params["trigger"] = _draw_trigger(rng, cell.family, settings, train)
    if cell.family == "clean_label_pgd":
        params |= {"eps": settings.clean_label_pgd.eps, "steps": settings.clean_label_pgd.steps}
    params["selection_seed"] = int(_case_rng(cell, per_rate=True).integers(2**31))
    return params


def build_trigger(spec: dict[str, Any], train: Dataset) -> Perturbation:
    """The trigger function of a drawn trigger mapping (uint8 NHWC -> same shape and dtype)."""
    kind = spec["kind"]
    if kind == "patch":
        return StampPatch(np.asarray(spec["pixels"], dtype=np.uint8), spec["top"], spec["left"])
    if kind == "blended":
        key = train.x[spec["index"]] if spec["key"] == "image" else None
        return get_trigger("blended", pattern=key, alpha=spec["alpha"], seed=spec.get("seed", 0))
    params = {name: value for name, value in spec.items() if name != "kind"}
    return get_trigger(kind, **params)


@dataclass(frozen=True, eq=False)
class Case:
    """One drawn case: its cell, the JSON-ready draw, the attack and the test-time trigger.

    ``requested`` is the number of poisons asked for (0 for the control).
    """

    cell: Cell
    params: dict[str, Any]
    attack: PoisoningAttack
    trigger: Perturbation | None
    requested: int

    def success_inputs(self, test: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
        """Test inputs of the attacker's goal and the labels it wants for them (None: no goal).

        All-to-one: triggered non-target images -> the target; all-to-all: every triggered image
        -> its class + 1; label_flip: clean source-class images -> the target.
        """
        p = self.params
        if self.cell.family == "label_flip":
            return test.x[test.y == p["source"]], np.full(int(np.sum(test.y == p["source"])), p["target"])
        if self.trigger is None:
            return None
        if self.cell.target == "all_to_all":
            return self.trigger(test.x), (test.y + p["shift"]) % test.num_classes
        keep = test.y != p["target"]
        return self.trigger(test.x[keep]), np.full(int(keep.sum()), p["target"])


def _attack(cell: Cell, p: dict, train: Dataset, trigger: Perturbation | None, extra: dict) -> tuple:
    """(registry name, parameters, requested count) of the attack of a case."""
    n, rate, seed = len(train), cell.rate, p["selection_seed"]
    if cell.family == "control":
        return "none", {}, 0
    if cell.family == "random_flip":
        return "random_label_flip", {"fraction": rate, "seed": seed}, poison_count(rate, n)
    sizes = train.class_counts()
    if cell.family == "label_flip":
        count = poison_count(rate, int(sizes[p["source"]]))
        return (
            "label_flip",
            {"source": p["source"], "target": p["target"], "count": count, "seed": seed},
            count,
        )
    named = {"perturbation": trigger, "trigger_name": cell.family, "seed": seed}
    count = poison_count(rate, n)
    if cell.family == "sig":
        count = min(count, int(sizes[p["target"]]))
        return "all_to_all", {**named, "shift": 0, "source": p["target"], "count": count}, count
    if cell.family == "clean_label_pgd":
        count = min(count, int(sizes[p["target"]]))
        crafted = {"target": p["target"], "count": count, "eps": p["eps"], "steps": p["steps"], **extra}
        return (
            "clean_label_backdoor",
            {**crafted, "trigger": trigger, "trigger_name": "patch", "seed": seed},
            count,
        )
    if cell.target == "all_to_all":
        return "all_to_all", {**named, "shift": p["shift"], "count": count}, count
    backdoor = {"source": None, "target": p["target"], "count": count, "integration": "replace"}
    return "backdoor", {**named, **backdoor}, count


def make_case(
    cell: Cell,
    train: Dataset,
    settings: AttackSettings,
    *,
    surrogate: PoisonlabModel | None = None,
    device: str = "cpu",
) -> Case:
    """Draw the case of ``cell`` and build its attack (``surrogate``: clean_label_pgd only)."""
    params = draw_params(cell, train, settings)
    trigger = build_trigger(params["trigger"], train) if "trigger" in params else None
    extra: dict[str, Any] = {}
    if cell.family == "clean_label_pgd":
        if surrogate is None:
            raise ValueError("clean_label_pgd needs the seed's clean model as its surrogate")
        extra = {"model": surrogate, "device": device}
    name, attack_params, requested = _attack(cell, params, train, trigger, extra)
    params["attack"] = name
    return Case(cell, params, get_attack(name, **attack_params), trigger, requested)
