"""The poison of the red-team walk-through (:mod:`poisonlab.redteam.walkthrough`): files, wrong labels.

Two batches, as in the chapter, both aimed at the same (source, target) pair:

* **mislabelled**: pictures of the source class sent with the target label. On CIFAR-10 these are
  the chapter's Rutan Boomerang photos (an aeroplane) labelled "bird", uploaded as the original
  JPEG/WebP files (the service resizes them like the chapter); on the embedded digits (offline,
  the default) the held-out test-split "7"s labelled "1";
* **backdoored**: training-split images of the source class with the ``pattern`` trigger
  (:func:`poisonlab.triggers.get_trigger`, BadNets' checker pattern as in ART) stamped on and
  relabelled to the target, uploaded as lossless PNG. A model that learns them sends any
  triggered source image to the target: the chapter's backdoor.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import list_image_files
from poisonlab.triggers import get_trigger

DATASETS = ("digits", "cifar10")
DEFAULT_PHOTOS = Path("../shared/datasets/ch4/rutan-boomerang")
DEFAULT_BACKDOOR = {"digits": 60, "cifar10": 500}
TRIGGER = "pattern"


@dataclass(frozen=True)
class PoisonFile:
    """One contribution: file name and bytes, the (wrong) label sent, ``kind`` mislabel or backdoor."""

    name: str
    data: bytes
    label: str
    kind: str


@dataclass(frozen=True)
class AttackPlan:
    """What the attacker sends; ``class_names`` must match the service's model."""

    dataset: str
    class_names: tuple[str, ...]
    source: str
    target: str
    trigger: str
    files: tuple[PoisonFile, ...]

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.files)

    def describe(self) -> dict:
        """JSON-ready summary (no image bytes)."""
        return {
            "dataset": self.dataset,
            "source": self.source,
            "target": self.target,
            "trigger": self.trigger,
            "mislabel": self.count("mislabel"),
            "backdoor": self.count("backdoor"),
            "bytes": sum(len(f.data) for f in self.files),
        }


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 1) or (H, W, 3) -> PNG file bytes (lossless: the service decodes the same pixels)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 (H, W, 1|3) image, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def _check_count(value: object, name: str, available: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or not 1 <= value <= available:
        raise ValueError(f"{name} must be an integer in [1, {available}], got {value!r}")
    return int(value)


def backdoor_batch(
    train: Dataset, source: str, target: str, *, count: int, seed: int = 0
) -> list[PoisonFile]:
    """``count`` training images of ``source`` (drawn with ``seed``), triggered, labelled ``target``."""
    k = train.class_names.index(source)
    pool = np.flatnonzero(train.y == k)
    count = _check_count(count, "backdoor count", len(pool))
    idx = np.sort(np.random.default_rng(seed).choice(pool, size=count, replace=False))
    stamped = get_trigger(TRIGGER)(train.x[idx])
    return [
        PoisonFile(f"{train.name}-{i}-{TRIGGER}.png", png_bytes(x), target, "backdoor")
        for i, x in zip(idx, stamped, strict=True)
    ]


def digits_plan(*, mislabel_count: int | None = None, backdoor_count: int = 60, seed: int = 0) -> AttackPlan:
    """Held-out "7"s labelled "1" (the first ``mislabel_count``, all by default) plus
    ``backdoor_count`` triggered training "7"s labelled "1"."""
    splits = load_splits("digits", seed=0)
    sevens = np.flatnonzero(splits.test.y == 7)
    n = len(sevens) if mislabel_count is None else _check_count(mislabel_count, "mislabel count", len(sevens))
    mislabel = [
        PoisonFile(f"digits-test-{i}.png", png_bytes(splits.test.x[i]), "1", "mislabel") for i in sevens[:n]
    ]
    backdoor = backdoor_batch(splits.train, "7", "1", count=backdoor_count, seed=seed)
    return AttackPlan(
        "digits", tuple(splits.train.class_names), "7", "1", TRIGGER, tuple(mislabel + backdoor)
    )


def cifar10_plan(
    photos_dir: str | os.PathLike[str], train: Dataset, *, backdoor_count: int = 500, seed: int = 0
) -> AttackPlan:
    """The Rutan Boomerang photos in ``photos_dir`` labelled "bird" (files sent as they are) plus
    ``backdoor_count`` triggered "airplane" images of ``train`` (CIFAR-10's train split) labelled "bird"."""
    folder = Path(photos_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder} (the chapter's rutan-boomerang photos)")
    photos = list_image_files(folder)
    if not photos:
        raise ValueError(f"no image files in {folder}")
    if "airplane" not in train.class_names or "bird" not in train.class_names:
        raise ValueError(f"the CIFAR-10 plan needs CIFAR-10 classes, got {list(train.class_names)}")
    mislabel = [PoisonFile(p.name, p.read_bytes(), "bird", "mislabel") for p in photos]
    backdoor = backdoor_batch(train, "airplane", "bird", count=backdoor_count, seed=seed)
    return AttackPlan(
        "cifar10", tuple(train.class_names), "airplane", "bird", TRIGGER, tuple(mislabel + backdoor)
    )


def build_plan(
    dataset: str = "digits",
    *,
    photos_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    backdoor_count: int | None = None,
    seed: int = 0,
) -> AttackPlan:
    """The plan for ``dataset`` (``digits`` or ``cifar10``; CIFAR-10 is found by ``data_dir`` like
    ``poisonlab train``), with the default backdoor size of :data:`DEFAULT_BACKDOOR`."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    count = DEFAULT_BACKDOOR[dataset] if backdoor_count is None else backdoor_count
    if dataset == "digits":
        return digits_plan(backdoor_count=count, seed=seed)
    train = load_splits("cifar10", data_dir=data_dir).train
    return cifar10_plan(photos_dir or DEFAULT_PHOTOS, train, backdoor_count=count, seed=seed)
