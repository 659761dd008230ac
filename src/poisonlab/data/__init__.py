"""Datasets: the :class:`Dataset` value and loaders (CIFAR-10, digits, image folders, arrays)."""

from poisonlab.data.arrays import load_arrays, save_arrays
from poisonlab.data.catalog import DATASETS, load_dataset_path, load_splits
from poisonlab.data.cifar10 import CIFAR10_CLASSES, CifarNotFoundError, load_cifar10
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.digits import load_digits_splits
from poisonlab.data.images import (
    PreparedImages,
    SkippedImagesWarning,
    load_image_file,
    load_image_folder,
    load_prepared,
    prepare_images,
    preprocess_image,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "CifarNotFoundError",
    "Dataset",
    "PreparedImages",
    "SkippedImagesWarning",
    "Splits",
    "load_arrays",
    "load_cifar10",
    "load_dataset_path",
    "load_digits_splits",
    "load_image_file",
    "load_image_folder",
    "load_prepared",
    "load_splits",
    "prepare_images",
    "preprocess_image",
    "save_arrays",
]
