"""The one in-memory dataset value every part of poisonlab passes around.

A :class:`Dataset` is immutable: attacks, defenses and loaders return new values instead of
editing arrays in place, so a clean split can be shared by many experiments without copies
leaking poison into it. Its :attr:`Dataset.content_hash` identifies the exact pixels, labels and
class names and is recorded in model and experiment lineage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from poisonlab.data.labels import resolve_label


def _as_source_array(source: object, n: int) -> np.ndarray:
    if isinstance(source, str):
        return np.full(n, source, dtype=object)
    arr = np.asarray(source, dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"source must be a string or have shape ({n},), got shape {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled images with provenance.

    Parameters
    ----------
    x : np.ndarray
        Images, shape (N, H, W, C), dtype uint8, values in [0, 255]. C is 1 or 3.
    y : np.ndarray
        Integer labels, shape (N,), values in [0, len(class_names)). Stored as int64.
    class_names : tuple of str
        Name of each class index.
    source : np.ndarray or str
        Per-sample provenance tag, shape (N,) (e.g. ``"cifar10:train"``,
        ``"folder:rutan-boomerang"``). A single string is broadcast to every sample.
    name : str
        Human-readable name used in reports.
    poison_mask : np.ndarray or None
        Ground-truth poison flags, shape (N,) bool, set by attacks; ``None`` when unknown.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    source: np.ndarray = field(default=None)  # type: ignore[assignment]
    name: str = "dataset"
    poison_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            got = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"x must be a 4-D array (N, H, W, C), got {got}")
        if x.dtype != np.uint8:
            raise ValueError(f"x must have dtype uint8 with values in [0, 255], got {x.dtype}")
        if x.shape[-1] not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels last (N, H, W, C), got shape {x.shape}")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
        names = tuple(str(c) for c in self.class_names)
        if not names:
            raise ValueError("class_names must name at least one class")
        if len(set(names)) != len(names):
            raise ValueError(f"class_names must be unique, got {names}")
        if y.size and (y.min() < 0 or y.max() >= len(names)):
            raise ValueError(
                f"labels must be in [0, {len(names) - 1}] for {len(names)} classes, "
                f"got range [{y.min()}, {y.max()}]"
            )
        source = "unknown" if self.source is None else self.source
        mask = self.poison_mask
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (x.shape[0],):
                raise ValueError(f"poison_mask must have shape ({x.shape[0]},), got {mask.shape}")
        object.__setattr__(self, "y", y.astype(np.int64, copy=False))
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "source", _as_source_array(source, x.shape[0]))
        object.__setattr__(self, "poison_mask", mask)

    # ------------------------------------------------------------------ basic views
    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    @cached_property
    def content_hash(self) -> str:
        """sha256 hex digest over shapes, pixels, labels and class names (not sources)."""
        h = hashlib.sha256()
        h.update(repr((self.x.shape, self.class_names)).encode())
        h.update(np.ascontiguousarray(self.x).data)
        h.update(np.ascontiguousarray(self.y, dtype="<i8").data)
        return h.hexdigest()

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class name, or an index given as int or in ASCII digits, to an index.

        The strict parser of :func:`poisonlab.data.labels.resolve_label`: "٣" (Arabic-Indic
        three) is not index 3. ValueError names the classes.
        """
        return resolve_label(name_or_index, self.class_names, what="class")

    def class_counts(self) -> np.ndarray:
        """Samples per class, shape (num_classes,)."""
        return np.bincount(self.y, minlength=self.num_classes)

    # ------------------------------------------------------------------ new values
    def replace(self, **changes: object) -> Dataset:
        """A copy with some fields changed (validated again)."""
        fields = dict(
            x=self.x,
            y=self.y,
            class_names=self.class_names,
            source=self.source,
            name=self.name,
            poison_mask=self.poison_mask,
        )
        fields.update(changes)
        return Dataset(**fields)  # type: ignore[arg-type]

    def subset(self, indices: np.ndarray | list[int] | slice, name: str | None = None) -> Dataset:
        """Samples at ``indices`` (integer indices, a boolean mask of shape (N,) or a slice)."""
        idx = indices if isinstance(indices, slice) else np.asarray(indices)
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"boolean index must have shape ({len(self)},), got {idx.shape}")
        if isinstance(idx, np.ndarray) and idx.dtype != bool:
            if idx.size and not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}")
            idx = idx.astype(np.int64, copy=False)  # an empty list arrives as float64
        mask = None if self.poison_mask is None else self.poison_mask[idx]
        return Dataset(
            x=self.x[idx],
            y=self.y[idx],
            class_names=self.class_names,
            source=self.source[idx],
            name=name or self.name,
            poison_mask=mask,
        )

    def concat(self, other: Dataset, name: str | None = None) -> Dataset:
        """This dataset followed by ``other`` (same image shape and class names required).

        The poison mask of a side that has none counts as all-clean.
        """
        if other.image_shape != self.image_shape:
            raise ValueError(f"cannot concatenate images of shape {other.image_shape} to {self.image_shape}")
        if other.class_names != self.class_names:
            raise ValueError(
                "cannot concatenate datasets with different classes: "
                f"{other.class_names} vs {self.class_names}"
            )
        mask = None
        if self.poison_mask is not None or other.poison_mask is not None:
            mask = np.concatenate([self.mask_or_clean(), other.mask_or_clean()])
        return Dataset(
            x=np.concatenate([self.x, other.x]),
            y=np.concatenate([self.y, other.y]),
            class_names=self.class_names,
            source=np.concatenate([self.source, other.source]),
            name=name or self.name,
            poison_mask=mask,
        )

    def mask_or_clean(self) -> np.ndarray:
        """The poison mask, or all-False when none is known; shape (N,) bool."""
        return np.zeros(len(self), dtype=bool) if self.poison_mask is None else self.poison_mask

    def float_images(self) -> np.ndarray:
        """Images as float32 in [0, 1], shape (N, H, W, C)."""
        return self.x.astype(np.float32) / 255.0

    def __repr__(self) -> str:
        poison = "" if self.poison_mask is None else f", poisoned={int(self.poison_mask.sum())}"
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, shape={self.image_shape}, "
            f"classes={self.num_classes}{poison}, hash={self.content_hash[:12]})"
        )


@dataclass(frozen=True)
class Splits:
    """Train / validation / test splits of one dataset (same classes and image shape)."""

    train: Dataset
    val: Dataset
    test: Dataset

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names
