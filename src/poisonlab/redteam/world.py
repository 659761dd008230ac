"""The red-team campaign's data: what the service holds, what outsiders send, and the attacker's triggers.

One seed of the campaign (:mod:`poisonlab.redteam.campaign`) draws a :class:`World` from the
embedded digits:

* the service's trusted base data: the digits train split *minus* a held-back pool (60 % of each
  class stays), with the untouched validation and test splits (the service's trusted sets);
* the pool (40 % of each training class): the images of the outside world, never in the base
  data, that honest contributors and the attacker draw from without replacement (so a contributed
  image is new to the service, as a user's photo would be, and no gate tests on it);
* the attacker's choices, all drawn from the seed: a target class and a source class, a patch
  trigger (a 2x2 or 3x3 square of white pixels or of a random binary pattern in a random corner),
  and a blend trigger (a random noise key blended at 15-25 %; Chen et al., "Targeted Backdoor
  Attacks on Deep Learning Systems Using Data Poisoning", arXiv:1712.05526, 2017). Neither is
  in the sensitivity gate's fixed list as drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits

__all__ = ["Trigger", "World", "blend_trigger", "make_world", "patch_trigger"]

POOL_FRACTION = 0.4


@dataclass(frozen=True)
class Trigger:
    """A trigger the attacker stamps on uint8 (N, H, W, C) images (uint8 out)."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray] = field(repr=False)


def patch_trigger(rng: np.random.Generator, shape: tuple[int, int, int]) -> Trigger:
    """BadNets-style patch (Gu et al., arXiv:1708.06733): a small square in a random corner."""
    h, w, _ = shape
    size = int(rng.integers(2, 4))
    top = int(rng.choice([0, h - size]))
    left = int(rng.choice([0, w - size]))
    solid = bool(rng.random() < 0.5)
    values = np.full((size, size), 255, np.uint8)
    if not solid:  # a checker-like random binary pattern, at least one pixel on
        values = (rng.random((size, size)) < 0.5).astype(np.uint8) * 255
        values.flat[int(rng.integers(values.size))] = 255

    def apply(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, top : top + size, left : left + size, :] = values[None, :, :, None]
        return out

    kind = "white" if solid else "random binary"
    return Trigger("patch", f"{size}x{size} {kind} square at row {top}, column {left}", apply)


def blend_trigger(rng: np.random.Generator, shape: tuple[int, int, int]) -> Trigger:
    """Blended noise key: ``(1 - alpha) x + alpha key`` over the whole image."""
    key = rng.uniform(0, 255, shape)
    alpha = float(rng.uniform(0.15, 0.25))

    def apply(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((1 - alpha) * x + alpha * key[None]), 0, 255).astype(np.uint8)

    return Trigger("blend", f"uniform noise key blended at alpha {alpha:.2f}", apply)


@dataclass
class World:
    """One seed's data and attack choices (see the module docstring); :meth:`draw` takes pool
    images without replacement."""

    seed: int
    splits: Splits
    pool: Dataset
    target: int
    source: int
    patch: Trigger
    blend: Trigger
    rng: np.random.Generator = field(repr=False)
    _free: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every pool image unused again (each scenario plays against a service of its own)."""
        self._free = np.ones(len(self.pool), bool)

    def draw(self, n: int, *, classes: np.ndarray | None = None, exclude: int | None = None) -> Dataset:
        """``n`` unused pool images (of ``classes`` when given, never of class ``exclude``)."""
        ok = self._free.copy()
        if classes is not None:
            ok &= np.isin(self.pool.y, classes)
        if exclude is not None:
            ok &= self.pool.y != exclude
        free = np.flatnonzero(ok)
        if len(free) < n:
            raise ValueError(f"the pool has {len(free)} unused images of that kind, {n} were asked")
        pick = np.sort(self.rng.choice(free, n, replace=False))
        self._free[pick] = False
        return self.pool.subset(pick)

    def describe(self) -> dict:
        names = self.splits.train.class_names
        return {
            "seed": self.seed,
            "base_train": len(self.splits.train),
            "pool": len(self.pool),
            "target": names[self.target],
            "source": names[self.source],
            "patch": self.patch.description,
            "blend": self.blend.description,
        }


def make_world(seed: int) -> World:
    """The :class:`World` of ``seed`` (digits; the split itself is the catalog's fixed one)."""
    digits = load_splits("digits")
    rng = np.random.default_rng(seed)
    train = digits.train
    held = [
        rng.choice(np.flatnonzero(train.y == c), int(POOL_FRACTION * np.sum(train.y == c)), replace=False)
        for c in range(train.num_classes)
    ]
    pool_idx = np.sort(np.concatenate(held))
    base = train.subset(np.setdiff1d(np.arange(len(train)), pool_idx), name="digits-train")
    splits = Splits(train=base, val=digits.val, test=digits.test)
    target, source = (int(v) for v in rng.choice(train.num_classes, 2, replace=False))
    shape = train.image_shape
    return World(
        seed=seed,
        splits=splits,
        pool=train.subset(pool_idx, name="digits-pool"),
        target=target,
        source=source,
        patch=patch_trigger(rng, shape),
        blend=blend_trigger(rng, shape),
        rng=rng,
    )
