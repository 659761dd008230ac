"""scikit-learn's bundled 8x8 handwritten digits: the offline default dataset.

The 1,797 images ship inside scikit-learn, so experiments, tests and demos run without any
download. Pixel intensities 0..16 are rescaled to uint8 0..255 so the images behave like every
other :class:`~poisonlab.data.dataset.Dataset`.
"""

from __future__ import annotations

import numpy as np

from poisonlab.data.dataset import Dataset, Splits

DIGITS_CLASSES = tuple(str(d) for d in range(10))


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as images and labels.

    Returns
    -------
    x : np.ndarray
        Images, shape (1797, 8, 8, 1), dtype uint8, values ``round(v * 255 / 16)`` in [0, 255].
    y : np.ndarray
        Labels, shape (1797,), int64 in [0, 9].
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    x = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., np.newaxis]
    return x, np.asarray(bunch.target, dtype=np.int64)


def _stratified_split(
    y: np.ndarray, fraction: float, seed: int, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, taken) with about ``fraction`` of them taken, per class."""
    if fraction == 0:
        return indices, indices[:0]
    from sklearn.model_selection import train_test_split

    rest, taken = train_test_split(indices, test_size=fraction, random_state=seed, stratify=y[indices])
    return np.asarray(rest), np.asarray(taken)


def load_digits_splits(*, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2) -> Splits:
    """Stratified, seeded train / validation / test splits of the 8x8 digits.

    Parameters
    ----------
    seed : int
        Seed of both stratified splits; the same seed gives the same splits.
    val_fraction : float
        Fraction of *all* images used for validation, in [0, 1).
    test_fraction : float
        Fraction of all images used for testing, in [0, 1); ``val_fraction + test_fraction < 1``.

    Returns
    -------
    Splits
        Datasets of images (N, 8, 8, 1) uint8 in [0, 255], labels in [0, 9], class names
        ``"0"``..``"9"``, named ``digits-train``/``-val``/``-test`` with sources
        ``digits:train``/``:val``/``:test``. Each split keeps the class proportions.
    """
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{label} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    x, y = load_digits_arrays()
    rest, test_idx = _stratified_split(y, test_fraction, seed, np.arange(len(y)))
    val_share = val_fraction / (1.0 - test_fraction)
    train_idx, val_idx = _stratified_split(y, val_share, seed + 1, rest)

    def make(idx: np.ndarray, split: str) -> Dataset:
        return Dataset(
            x=x[idx], y=y[idx], class_names=DIGITS_CLASSES, source=f"digits:{split}", name=f"digits-{split}"
        )

    return Splits(train=make(train_idx, "train"), val=make(val_idx, "val"), test=make(test_idx, "test"))
