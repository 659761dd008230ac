"""NumPy array files (``.npz`` / ``.npy``) <-> :class:`~poisonlab.data.dataset.Dataset`.

Images are normalised to the library's layout, (N, H, W, C) uint8 in [0, 255]:

* (N, H, W) grayscale gains a channel axis -> (N, H, W, 1);
* (N, H, W, C) with C in (1, 3) is kept; otherwise (N, C, H, W) with C in (1, 3) is taken as
  channels-first and transposed (so an ambiguous (N, 3, H, 3) counts as channels-last);
* uint8 is kept, other integer types must lie in [0, 255], floats must lie in [0, 1] and become
  ``round(x * 255)``.

Files are read with ``allow_pickle=False``: a crafted array file cannot run code.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.data.images import resolve_label

_KEY_PAIRS = (("x", "y"), ("images", "labels"))


def to_uint8_images(x: np.ndarray) -> np.ndarray:
    """Normalise an image array to (N, H, W, C) uint8 (see the module docstring).

    Raises
    ------
    ValueError
        Wrong number of dimensions, no 1/3-channel axis, non-numeric dtype, NaN/inf, floats
        outside [0, 1] or integers outside [0, 255].
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    elif x.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got {x.ndim}-D shape {x.shape}")
    if x.shape[-1] not in (1, 3):
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"images need 1 or 3 channels, (N, H, W, C) or (N, C, H, W); got shape {x.shape}"
            )
        x = x.transpose(0, 2, 3, 1)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"images must be uint8, integer in [0, 255] or float in [0, 1], got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise ValueError("images contain NaN or infinite values")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"float images must be in [0, 1], got range [{x.min():g}, {x.max():g}] "
                "(divide 0..255 data by 255 or store uint8)"
            )
        return np.rint(x.astype(np.float64) * 255.0).astype(np.uint8)
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"integer images must be in [0, 255], got range [{x.min()}, {x.max()}]")
    return np.ascontiguousarray(x.astype(np.uint8))


def to_labels(y: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    """Validate class indices: shape (n,), integral, non-negative. Returns int64.

    Whole-valued floats (e.g. ``3.0``) are accepted; one-hot (N, K) arrays are not.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D class indices of shape ({n},), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{n} images but {y.shape[0]} labels")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise ValueError("labels must be integer class indices, got non-integer values")
    elif y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be non-negative, got minimum {y.min()}")
    return y.astype(np.int64)


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read array file {path}: {exc}") from exc


def _pick(data: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    for xk, yk in _KEY_PAIRS:
        if xk in data:
            return data[xk], data.get(yk)
    raise ValueError(f"{path} holds {sorted(data)}; expected arrays 'x' and 'y' or 'images' and 'labels'")


def _class_names(given: Sequence[str] | None, stored: np.ndarray | None, y: np.ndarray) -> tuple[str, ...]:
    if given is not None:
        return tuple(str(c) for c in given)
    if stored is not None:
        return tuple(str(c) for c in np.asarray(stored).reshape(-1))
    return tuple(str(i) for i in range(int(y.max(initial=0)) + 1))


def load_arrays(
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    labels: np.ndarray | Sequence[int] | str | os.PathLike[str] | None = None,
    label: str | int | None = None,
) -> Dataset:
    """Load images and labels from a ``.npz`` or ``.npy`` file.

    Parameters
    ----------
    path : path-like
        ``.npz`` with arrays ``x`` and ``y`` (or ``images`` and ``labels``) and optionally
        ``class_names``, ``source``, ``poison_mask`` and ``name`` (as written by
        :func:`save_arrays`); or ``.npy`` holding images only.
    class_names : sequence of str, optional
        Overrides stored names; default ``"0"``..``str(max label)``.
    labels : array-like or path-like, optional
        Labels (N,) for files without them: an array or a ``.npy`` file.
    label : str or int, optional
        One class (name or index) for every image of a file without labels.

    Returns
    -------
    Dataset
        Images (N, H, W, C) uint8 in [0, 255] (see module docstring), labels int64.

    Raises
    ------
    FileNotFoundError
        ``path`` (or a ``labels`` file) does not exist.
    ValueError
        Unsupported suffix, unreadable file, missing labels or invalid images/labels.
    """
    p = Path(path)
    if p.suffix not in (".npz", ".npy"):
        raise ValueError(f"unsupported array file {p.name}: expected .npz or .npy")
    if not p.is_file():
        raise FileNotFoundError(f"no such array file: {p}")
    data = _load(p)
    images, y = _pick(data, p)
    x = to_uint8_images(images)
    if y is None and labels is not None:
        y = np.load(Path(labels), allow_pickle=False) if isinstance(labels, str | os.PathLike) else labels
    if y is None and label is not None:
        if class_names is None:
            raise ValueError("label needs class_names to resolve against")
        y = np.full(len(x), resolve_label(label, class_names), dtype=np.int64)
    if y is None:
        raise ValueError(
            f"{p.name} has no labels: pass labels= (array or .npy file) or label= with class_names"
        )
    y = to_labels(y, len(x))
    mask = data.get("poison_mask")
    source = data.get("source")
    return Dataset(
        x=x,
        y=y,
        class_names=_class_names(class_names, data.get("class_names"), y),
        source=source.astype(object)
        if source is not None and source.shape == (len(x),)
        else f"arrays:{p.name}",
        name=str(data["name"]) if "name" in data else p.stem,
        poison_mask=None if mask is None or mask.shape != (len(x),) else mask.astype(bool),
    )


def save_arrays(dataset: Dataset, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
    """Write ``dataset`` to a ``.npz`` readable by :func:`load_arrays` (and plain numpy).

    Stores ``x`` (N, H, W, C) uint8, ``y`` (N,) int64, ``class_names`` and ``source`` as unicode
    string arrays, ``name``, and ``poison_mask`` (N,) bool when known. The file is written to a
    temporary name and renamed, so readers never see a partial file.

    Returns
    -------
    Path
        The file written (``.npz`` appended when missing).
    """
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    arrays: dict[str, np.ndarray] = {
        "x": dataset.x,
        "y": dataset.y,
        "class_names": np.asarray(dataset.class_names, dtype=str),
        "source": np.asarray([str(s) for s in dataset.source], dtype=str),
        "name": np.asarray(dataset.name, dtype=str),
    }
    if dataset.poison_mask is not None:
        arrays["poison_mask"] = dataset.poison_mask
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return p
