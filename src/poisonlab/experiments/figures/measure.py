"""What a trigger changed in one image: the changed-pixel mask, its bounding box and the distances.

The figures of a trigger show it; these numbers say it exactly: how many pixels (and pixel
values) the trigger touched, where, and how far the triggered image is from the original in the
L0, L2 and Linf norms commonly used to bound a perturbation (e.g. Carlini and Wagner 2017,
*Towards Evaluating the Robustness of Neural Networks*, arXiv:1608.04644).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Change", "as_unit", "measure_change"]


def as_unit(image: np.ndarray) -> np.ndarray:
    """``image`` as float64 on the unit scale: ``uint8 / 255``, floats as they are.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` in ``[0, 255]`` or float in ``[0, 1]``, any shape.
    """
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


@dataclass(frozen=True)
class Change:
    """How a triggered image differs from its original.

    Attributes
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool: the pixels where at least one channel changed.
    changed_pixels : int
        Number of ``True`` entries of ``mask``.
    changed_values : int
        Number of changed ``(row, column, channel)`` values (the L0 distance).
    bbox : dict or None
        ``top``, ``left``, ``bottom``, ``right`` (inclusive pixel indices), ``height`` and
        ``width`` of the smallest box holding every changed pixel; None when nothing changed.
    l0, l2, linf : float
        Distances between the two images on the unit scale (values in ``[0, 1]``), over all
        ``H * W * C`` values: the count of changed values, the Euclidean norm and the largest
        absolute change of the difference.
    """

    mask: np.ndarray
    changed_pixels: int
    changed_values: int
    bbox: dict[str, int] | None
    l0: int
    l2: float
    linf: float

    def as_dict(self) -> dict[str, object]:
        """The numbers (everything but the mask), JSON-ready."""
        return {
            "changed_pixels": self.changed_pixels,
            "changed_values": self.changed_values,
            "bbox": self.bbox,
            "l0": self.l0,
            "l2": self.l2,
            "linf": self.linf,
        }


def _bbox(mask: np.ndarray) -> dict[str, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return {
        "top": top,
        "left": left,
        "bottom": bottom,
        "right": right,
        "height": bottom - top + 1,
        "width": right - left + 1,
    }


def measure_change(original: np.ndarray, triggered: np.ndarray) -> Change:
    """Compare one image with its triggered version.

    Parameters
    ----------
    original, triggered : numpy.ndarray
        ``(H, W, C)`` images of the same shape, each ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]`` (compared on the unit scale, so a ``uint8`` image may be measured against a
        float one).

    Returns
    -------
    Change

    Raises
    ------
    ValueError
        When the shapes differ or are not ``(H, W, C)``.
    """
    if original.shape != triggered.shape or original.ndim != 3:
        raise ValueError(
            f"expected two (H, W, C) images of the same shape, got {original.shape} and {triggered.shape}"
        )
    diff = as_unit(triggered) - as_unit(original)
    changed = diff != 0
    mask = changed.any(axis=-1)
    count = int(changed.sum())
    return Change(
        mask=mask,
        changed_pixels=int(mask.sum()),
        changed_values=count,
        bbox=_bbox(mask),
        l0=count,
        l2=float(np.sqrt(np.sum(diff**2))),
        linf=float(np.abs(diff).max(initial=0.0)),
    )
