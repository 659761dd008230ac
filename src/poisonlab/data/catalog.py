"""One entry point for every dataset poisonlab knows.

* :func:`load_splits` loads a named, split dataset (``"cifar10"`` or the offline ``"digits"``);
* :func:`resolve_data_dir` says where a named dataset is read from when no location is given
  (the one rule every command follows) and :func:`load_named_splits` loads it from there;
* :func:`load_dataset_path` loads user data from a path: an image folder, a folder written by
  ``poisonlab images prepare``, or a ``.npz``/``.npy`` array file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from poisonlab.data.arrays import load_arrays
from poisonlab.data.cifar10 import find_cifar10, load_cifar10
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.digits import load_digits_splits
from poisonlab.data.images import load_image_folder, load_prepared, resolve_label

DATASETS: tuple[str, ...] = ("cifar10", "digits")
#: image shape (H, W, C) and number of classes of each named dataset: what a network must take
#: (configs check their networks against it before any data is loaded)
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((8, 8, 1), 10),
    "cifar10": ((32, 32, 3), 10),
}
_ALIASES = {"cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10", "digits": "digits"}
#: where the project's shared data folder keeps CIFAR-10 (``../shared/datasets/cifar10-jpeg``)
SHARED_CIFAR10 = Path("datasets") / "cifar10-jpeg"


def _known_key(name: str) -> str | None:
    """The catalog name of ``name``, or None for a name the catalog does not know."""
    return _ALIASES.get(str(name).strip().lower())


def dataset_key(name: str) -> str:
    """The catalog name of ``name`` (case-insensitive; ``"cifar-10"``, ``"cifar_10"`` accepted).

    Raises
    ------
    ValueError
        Not one of :data:`DATASETS` or their spellings.
    """
    key = _known_key(name)
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def shared_data_root() -> Path:
    """``$POISONLAB_SHARED``, else ``../shared`` next to the working directory (the checkout's
    shared data folder, which the experiment configs name as ``${POISONLAB_SHARED}``)."""
    return Path(os.environ.get("POISONLAB_SHARED") or Path.cwd().parent / "shared")


def resolve_data_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the named dataset ``name`` is read from: the rule every ``poisonlab`` command follows.

    Parameters
    ----------
    name : str
        A name of :data:`DATASETS` (aliases accepted).
    data_dir : path-like, optional
        An explicit location (``--data-dir``, a config's ``data_dir``): always wins.

    Returns
    -------
    Path or None
        ``data_dir`` when given; for CIFAR-10 without one: None when ``$POISONLAB_DATA`` is set
        (:func:`~poisonlab.data.cifar10.load_cifar10` reads it and names it in its errors), else
        the shared copy ``$POISONLAB_SHARED/datasets/cifar10-jpeg`` (default
        ``../shared/datasets/cifar10-jpeg``) when it holds CIFAR-10, else None (the cache folder,
        then a download). ``digits`` ships with scikit-learn: None.

    Raises
    ------
    ValueError
        ``data_dir`` given for ``digits``, which is never read from a folder (the location would
        be ignored and recorded in the run's provenance as if it had been read).
    """
    if data_dir is not None:
        if _known_key(name) == "digits":
            raise ValueError(
                f"a data folder ({data_dir}) was given for digits, which is embedded and read from no "
                "folder; drop --data-dir (or the config's data_dir)"
            )
        return Path(data_dir)
    if _known_key(name) != "cifar10" or os.environ.get("POISONLAB_DATA"):
        return None
    shared = shared_data_root() / SHARED_CIFAR10
    return shared if find_cifar10(shared) is not None else None


def load_named_splits(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, seed: int = 0, val_size: int | None = None
) -> Splits:
    """:func:`load_splits` from the location :func:`resolve_data_dir` finds (what commands call)."""
    return load_splits(name, data_dir=resolve_data_dir(name, data_dir), seed=seed, val_size=val_size)


def load_splits(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, seed: int = 0, val_size: int | None = None
) -> Splits:
    """Load a named dataset as train / validation / test splits.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (case-insensitive; ``"cifar-10"`` is accepted too).
    data_dir : path-like, optional
        Where CIFAR-10 lives (see :func:`~poisonlab.data.cifar10.load_cifar10`); ignored for
        ``"digits"``, which ships with scikit-learn.
    seed : int
        Seed of the split.
    val_size : int, optional
        ``cifar10`` only: validation images taken from the 50,000 training images (default
        10,000). ``digits`` uses fixed fractions and rejects it.

    Returns
    -------
    Splits
        ``cifar10``: 40,000 / 10,000 / 10,000 images (32, 32, 3); ``digits``: about
        65% / 15% / 20% of 1,797 images (8, 8, 1); all uint8 in [0, 255].
    """
    if dataset_key(name) == "cifar10":
        return load_cifar10(data_dir, seed=seed, **({} if val_size is None else {"val_size": val_size}))
    if val_size is not None:
        raise ValueError("val_size applies to cifar10 only; digits uses fixed split fractions")
    return load_digits_splits(seed=seed)


def _prepared_dataset(
    folder: Path, class_names: Sequence[str] | None, label: str | int | None, size: int
) -> Dataset:
    x = load_prepared(folder)
    if x.shape[1:3] != (size, size):
        raise ValueError(
            f"{folder} holds {x.shape[1]}x{x.shape[2]} images but size {size} was asked; "
            f"prepare it again with --size {size}"
        )
    if label is None or class_names is None:
        raise ValueError(
            f"{folder} is a prepared image folder (images.npy without labels): it can be read only as "
            "one class (a label, such as train's --label)"
        )
    idx = resolve_label(label, class_names)
    return Dataset(
        x=x,
        y=np.full(len(x), idx, dtype=np.int64),
        class_names=tuple(class_names),
        source=f"folder:{folder.resolve().name}",
        name=folder.resolve().name,
    )


def load_dataset_path(
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    label: str | int | None = None,
    size: int = 32,
) -> Dataset:
    """Load a dataset from ``path``, dispatching on what it is.

    Parameters
    ----------
    path : path-like
        A folder with ``images.npy`` (from :func:`~poisonlab.data.images.prepare_images`), an
        image folder (class sub-folders, or flat with ``label``), or a ``.npz``/``.npy`` file.
    class_names : sequence of str, optional
        Class names (e.g. CIFAR-10's); required with ``label``.
    label : str or int, optional
        One class (name or index) for every image of a flat or prepared folder / label-less file.
    size : int
        Side length images of a folder are resized to (a prepared folder must match it).

    Returns
    -------
    Dataset
        Images (N, H, W, C) uint8 in [0, 255].

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unsupported file type or invalid content.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "images.npy").is_file():
            return _prepared_dataset(p, class_names, label, size)
        return load_image_folder(p, size=size, label=label, class_names=class_names)
    if not p.exists():
        raise FileNotFoundError(f"no such dataset path: {p}")
    if p.suffix in (".npz", ".npy"):
        return load_arrays(p, class_names=class_names, label=label)
    raise ValueError(f"unsupported dataset path {p}: expected a folder, a .npz or a .npy file")
