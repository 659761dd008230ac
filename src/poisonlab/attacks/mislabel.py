"""Mislabelled-sample injection: append outside images under a chosen wrong label.

This is the chapter's first attack: 25 scraped photos of the Rutan Boomerang airplane are added
to the CIFAR-10 training set labelled "bird", so a model trained on it learns to call that (and
similar) airplanes birds. It is the simplest "dirty-label" poisoning: the attacker controls a few
training samples and their labels, without touching the rest of the data (Biggio et al., "Poisoning
Attacks against Support Vector Machines", ICML 2012, arXiv:1206.6389; see also Shafahi et al.,
"Poison Frogs! Targeted Clean-Label Poisoning Attacks on Neural Networks", NeurIPS 2018,
arXiv:1804.00792, for the clean-label contrast).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poisonlab.attacks.base import ATTACKS, CLASS, PoisoningAttack, PoisonResult, make_result, resolve_class
from poisonlab.data.dataset import Dataset
from poisonlab.params import NON_EMPTY_STR, InstanceOf

__all__ = ["MislabelInjection"]


@ATTACKS.register
@dataclass(frozen=True, kw_only=True, eq=False)
class MislabelInjection(PoisoningAttack):
    """Append external images labelled as ``target``.

    Parameters
    ----------
    images : Dataset or np.ndarray
        The images to inject, uint8 of shape (N, H, W, C) with C in {1, 3} (a :class:`Dataset`'s
        labels and sources are ignored, only its pixels are used). They must have the clean set's
        (H, W, C); resize / convert them beforehand.
    target : str or int
        The wrong class to give them (e.g. ``"bird"``), resolved against the clean set's classes.
    source_tag : str
        Provenance tag; the injected samples get source ``"external:<source_tag>"``.
    """

    name = "mislabel"
    needs_target_class = True
    parameter_constraints = {
        "images": [InstanceOf((Dataset, np.ndarray), "a Dataset or a numpy array")],
        "target": [CLASS],
        "source_tag": [NON_EMPTY_STR],
    }

    images: Dataset | np.ndarray = field(repr=False)
    target: str | int
    source_tag: str = "external"

    def _check(self) -> None:
        # the shape rules of the pixels; their range is implied by the uint8 dtype
        imgs = self.images.x if isinstance(self.images, Dataset) else self.images
        if imgs.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C), got shape {imgs.shape}")
        if imgs.dtype != np.uint8:
            raise ValueError(f"images must have dtype uint8 with values in [0, 255], got {imgs.dtype}")
        if imgs.shape[0] == 0:
            raise ValueError("images must hold at least one image, got 0")
        if imgs.shape[-1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels last (N, H, W, C), got shape {imgs.shape}")
        frozen = np.array(imgs, copy=True)
        frozen.setflags(write=False)
        object.__setattr__(self, "_x", frozen)

    @property
    def num_images(self) -> int:
        return int(self._x.shape[0])  # type: ignore[attr-defined]

    def poison(self, clean: Dataset) -> PoisonResult:
        """``clean`` followed by the external images, all labelled ``target`` and marked as poison."""
        x: np.ndarray = self._x  # type: ignore[attr-defined]
        target = resolve_class(clean, self.target, "target")
        want, got = clean.image_shape, tuple(int(s) for s in x.shape[1:])
        if got != want:
            if got[:2] == want[:2]:
                raise ValueError(
                    f"images have {got[2]} channel(s) but the clean set has {want[2]}: "
                    f"expected image shape {want}, got {got} (convert to "
                    f"{'RGB' if want[2] == 3 else 'grayscale'} first)"
                )
            raise ValueError(f"images must match the clean set's image shape: expected {want}, got {got}")
        n = x.shape[0]
        tag = f"external:{self.source_tag}"
        injected = Dataset(
            x=np.array(x, copy=True),
            y=np.full(n, target, dtype=np.int64),
            class_names=clean.class_names,
            source=tag,
            name=tag,
            poison_mask=np.ones(n, dtype=bool),
        )
        target_name = clean.class_names[target]
        out = clean.concat(injected, name=f"{clean.name}+mislabel[{self.source_tag}->{target_name}]")
        if out.poison_mask is None:  # pragma: no cover - concat sets it since injected has one
            raise AssertionError("poison mask lost")
        return make_result(out, f"mislabel: {n} {tag} -> {target_name}, appended")
