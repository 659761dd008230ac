"""ART-style arrays in and out of the dataset-level attacks: ``attack.poison(x, y)``.

ART's poisoning attacks are called on arrays (``poison(x, y) -> (x_poisoned, y_poisoned)``).
:class:`~poisonlab.attacks.base.PoisoningAttack` keeps its ``poison(dataset)``, and every
``poison`` a subclass defines is wrapped by :func:`accepting_arrays` so that the ART call works
too: the arrays become a :class:`~poisonlab.data.Dataset`, the attack runs, and the poisoned
arrays come back with the poison mask (:func:`poison_arrays`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset

__all__ = ["accepting_arrays", "poison_arrays"]


def poison_arrays(
    attack: Any, x: np.ndarray, y: np.ndarray, *, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``attack.poison`` on arrays: ``(x, y) -> (x_poisoned, y_poisoned, poison_mask)``.

    See :meth:`poisonlab.attacks.base.PoisoningAttack.poison_arrays` for the parameters.
    """
    labels, one_hot = _array_labels(x, y)
    k = one_hot if one_hot is not None else int(labels.max(initial=-1)) + 1
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(max(k, 1)))
    if one_hot is not None and len(names) != one_hot:
        raise ValueError(
            f"class_names must name the {one_hot} one-hot columns of y: expected {one_hot} names, "
            f"got {len(names)}"
        )
    data = Dataset(x=x, y=labels, class_names=names, source="arrays", name="arrays")
    out = attack.poison(data).dataset
    y_out = out.y
    if one_hot is not None:  # give the labels back in the encoding they came in
        y_out = np.eye(one_hot, dtype=np.asarray(y).dtype)[out.y]
    return out.x, y_out, out.mask_or_clean().copy()


def accepting_arrays(poison: Callable[..., Any]) -> Callable[..., Any]:
    """``poison(dataset)`` that also takes ``poison(x, y)`` arrays (then :meth:`poison_arrays`)."""

    @functools.wraps(poison)
    def dispatch(self: Any, data: Any, y: Any = None, /, **kwargs: Any) -> Any:
        if isinstance(data, np.ndarray):
            if y is None:
                raise ValueError("poison(x, y) needs the labels y of the images x, got y=None")
            return self.poison_arrays(data, y, **kwargs)
        if y is not None:
            raise ValueError(
                f"poison takes a Dataset, or arrays as poison(x, y); got {type(data).__name__} and y"
            )
        return poison(self, data, **kwargs)

    return dispatch


def _array_labels(x: object, y: object) -> tuple[np.ndarray, int | None]:
    """Class indices (N,) from ``y`` given as indices or one-hot rows; the one-hot width or None."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        got = getattr(x, "dtype", type(x).__name__)
        raise ValueError(
            f"x must be a uint8 image array (N, H, W, C), got {got}; convert float images in "
            "[0, 1] with (x * 255).round().astype(np.uint8)"
        )
    arr = np.asarray(y)
    if arr.ndim == 2:
        if arr.size and not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
            raise ValueError("y of shape (N, K) must be one-hot: one 1 per row, zeros elsewhere")
        return arr.argmax(axis=1).astype(np.int64), int(arr.shape[1])
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"y must be class indices (N,) or one-hot rows (N, K), got {arr.dtype} of shape {arr.shape}"
        )
    return arr.astype(np.int64), None
