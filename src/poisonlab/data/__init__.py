"""Datasets: the :class:`Dataset` value and loaders (CIFAR-10, digits, image folders, arrays)."""

from poisonlab.data.dataset import Dataset, Splits

__all__ = ["Dataset", "Splits"]
