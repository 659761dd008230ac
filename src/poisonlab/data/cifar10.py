"""CIFAR-10 from the standard "CIFAR-10 python version" release.

The loader accepts the extracted ``cifar-10-batches-py`` folder, the folder holding it, or the
``cifar-10-python.tar.gz`` archive (read member by member, never extracted to disk). Without a
location it tries ``$POISONLAB_DATA``, then the cache folder (``$POISONLAB_HOME``, default
``~/.cache/poisonlab``), and finally downloads the official archive into the cache.

Batch pickles are read with a restricted unpickler that only admits the numpy globals needed to
rebuild the image array, so a tampered archive cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset, Splits

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCH_DIR_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
_IMAGE_BYTES = 3 * 32 * 32
_MAX_MEMBER_BYTES = 256 * 1024 * 1024  # a real batch is ~31 MB; refuse absurd tar members

_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
}


class CifarNotFoundError(FileNotFoundError):
    """CIFAR-10 could not be found locally nor downloaded."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals an ndarray pickle needs."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # pickles written by numpy < 2
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def cache_dir() -> Path:
    """Folder for downloads: ``$POISONLAB_HOME`` or ``~/.cache/poisonlab``."""
    return Path(os.environ.get("POISONLAB_HOME") or Path.home() / ".cache" / "poisonlab").expanduser()


def _not_found_message(looked_in: list[Path], reason: str = "") -> str:
    places = ", ".join(str(p) for p in looked_in) or "nowhere"
    msg = (
        f"CIFAR-10 not found (looked in: {places}). Pass --data-dir DIR (a folder holding "
        f"{BATCH_DIR_NAME}/ or {ARCHIVE_NAME}), set the POISONLAB_DATA environment variable, "
        f"or download {CIFAR10_URL} (md5 {CIFAR10_MD5}) into {cache_dir()}"
    )
    return f"{msg}. Download failed: {reason}" if reason else msg


def find_cifar10(path: str | os.PathLike[str]) -> Path | None:
    """Locate CIFAR-10 at ``path``.

    Parameters
    ----------
    path : path-like
        A ``cifar-10-python.tar.gz`` file, a ``cifar-10-batches-py`` folder, or a folder holding
        either of them.

    Returns
    -------
    Path or None
        The batch folder or the archive file; ``None`` when ``path`` holds neither.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p if p.name.endswith((".tar.gz", ".tgz", ".tar")) else None
    if not p.is_dir():
        return None
    if (p / TRAIN_BATCHES[0]).is_file():
        return p
    if (p / BATCH_DIR_NAME / TRAIN_BATCHES[0]).is_file():
        return p / BATCH_DIR_NAME
    if (p / ARCHIVE_NAME).is_file():
        return p / ARCHIVE_NAME
    return None


def _fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into the file ``dest`` (the only function that touches the network)."""
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - integrity check against the published checksum
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download_cifar10(
    dest_dir: str | os.PathLike[str], *, url: str | None = None, md5: str | None = None
) -> Path:
    """Download the CIFAR-10 archive into ``dest_dir`` and verify its md5.

    ``url`` and ``md5`` default to :data:`CIFAR10_URL` and :data:`CIFAR10_MD5`.

    The archive is written to a temporary file in ``dest_dir`` and renamed only after the
    checksum matches, so an interrupted download never leaves a half archive behind.

    Returns
    -------
    Path
        ``dest_dir / "cifar-10-python.tar.gz"``.

    Raises
    ------
    ValueError
        The downloaded file does not have the expected md5.
    OSError
        The download failed (e.g. no network).
    """
    url, md5 = url or CIFAR10_URL, md5 or CIFAR10_MD5
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".cifar10-", suffix=".part", dir=dest)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _fetch(url, tmp)
        got = _md5(tmp)
        if got != md5:
            raise ValueError(f"downloaded {url} has md5 {got}, expected {md5}; file rejected")
        final = dest / ARCHIVE_NAME
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _locate(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        found = find_cifar10(data_dir)
        if found is None:
            raise CifarNotFoundError(_not_found_message([Path(data_dir)]))
        return found
    env = os.environ.get("POISONLAB_DATA")
    if env:
        found = find_cifar10(env)
        if found is None:
            raise CifarNotFoundError(_not_found_message([Path(env)]) + " (from POISONLAB_DATA)")
        return found
    cache = cache_dir()
    found = find_cifar10(cache)
    if found is not None:
        return found
    try:
        return download_cifar10(cache)
    except (OSError, ValueError) as exc:
        raise CifarNotFoundError(_not_found_message([cache], f"{type(exc).__name__}: {exc}")) from exc


def _unpickle(raw: bytes, name: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on corrupt input
        raise ValueError(f"cannot read CIFAR-10 file {name}: corrupt or truncated pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"cannot read CIFAR-10 file {name}: expected a dict, got {type(obj).__name__}")
    return obj


def _decode_batch(raw: bytes, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch pickle bytes -> images (N, 32, 32, 3) uint8 and labels (N,) int64."""
    obj = _unpickle(raw, name)
    data, labels = obj.get(b"data"), obj.get(b"labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise ValueError(f"CIFAR-10 file {name} lacks b'data' (ndarray) or b'labels'")
    if data.ndim != 2 or data.shape[1] != _IMAGE_BYTES or data.dtype != np.uint8:
        raise ValueError(
            f"CIFAR-10 file {name}: data must be (N, {_IMAGE_BYTES}) uint8, got {data.shape} {data.dtype}"
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CIFAR-10 file {name}: labels are not integers ({exc})") from exc
    if y.shape != (data.shape[0],):
        raise ValueError(f"CIFAR-10 file {name}: {data.shape[0]} images but labels of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"CIFAR-10 file {name}: labels must be in [0, {num_classes - 1}]")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, y


def _decode_meta(raw: bytes | None, name: str) -> tuple[str, ...]:
    if raw is None:
        return CIFAR10_CLASSES
    names = _unpickle(raw, name).get(b"label_names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"CIFAR-10 file {name} lacks a b'label_names' list")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _read_members(location: Path) -> dict[str, bytes]:
    """Raw bytes of the meta file and every batch, keyed by file name."""
    wanted = {*TRAIN_BATCHES, TEST_BATCH, META_FILE}
    if location.is_dir():
        return {n: (location / n).read_bytes() for n in wanted if (location / n).is_file()}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(location, "r:*") as tar:
            for member in tar:  # one sequential pass: no backwards seeks in the gzip stream
                base = member.name.rsplit("/", 1)[-1]
                if base in wanted and member.isfile() and base not in found:
                    if member.size > _MAX_MEMBER_BYTES:
                        raise ValueError(f"{location.name}: member {member.name} is too large")
                    fobj = tar.extractfile(member)
                    found[base] = fobj.read() if fobj is not None else b""
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read CIFAR-10 archive {location}: {exc}") from exc
    return found


def read_cifar10_arrays(location: str | os.PathLike[str]) -> dict[str, Any]:
    """Read every batch at ``location`` (anything :func:`find_cifar10` accepts).

    Returns
    -------
    dict
        ``x_train`` (50000, 32, 32, 3) uint8, ``y_train`` (50000,) int64 in [0, 9], ``x_test``,
        ``y_test`` (10000 each for the real data) and ``class_names`` (tuple of 10 str).
    """
    location = find_cifar10(location) or Path(location)
    members = _read_members(location)
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in members]
    if missing:
        raise ValueError(f"CIFAR-10 at {location} is incomplete: missing {', '.join(missing)}")
    class_names = _decode_meta(members.get(META_FILE), f"{location}/{META_FILE}")
    parts = [_decode_batch(members.pop(n), f"{location}/{n}", len(class_names)) for n in TRAIN_BATCHES]
    x_test, y_test = _decode_batch(members.pop(TEST_BATCH), f"{location}/{TEST_BATCH}", len(class_names))
    return {
        "x_train": np.ascontiguousarray(np.concatenate([p[0] for p in parts])),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": np.ascontiguousarray(x_test),
        "y_test": y_test,
        "class_names": class_names,
    }


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, val_size: int = 10_000
) -> Splits:
    """Load CIFAR-10 split like the chapter: 40,000 train / 10,000 validation / 10,000 test.

    Parameters
    ----------
    data_dir : path-like or None
        Folder holding ``cifar-10-batches-py`` (or that folder itself), or the
        ``cifar-10-python.tar.gz`` archive (or a folder holding it). ``None``: use
        ``$POISONLAB_DATA``, else the cache folder, else download the official archive.
    seed : int
        Seed of ``numpy.random.default_rng(seed).permutation`` over the training batches; the
        first ``n - val_size`` permuted indices form train, the rest validation (permuted order).
    val_size : int
        Validation images taken from the 50,000 training images, in [0, n).

    Returns
    -------
    Splits
        Datasets of images (N, 32, 32, 3) uint8 in [0, 255] and labels in [0, 9], named
        ``cifar10-train``/``-val``/``-test`` with sources ``cifar10:train``/``:val``/``:test``.

    Raises
    ------
    CifarNotFoundError
        No data at the given or default places and the download failed.
    ValueError
        Corrupt, truncated or malformed files, or ``val_size`` out of range.
    """
    arrays = read_cifar10_arrays(_locate(data_dir))
    n = len(arrays["y_train"])
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n - 1}] for {n} training images, got {val_size}")
    perm = np.random.default_rng(seed).permutation(n)
    train_idx, val_idx = perm[: n - val_size], perm[n - val_size :]
    names = arrays["class_names"]
    x, y = arrays["x_train"], arrays["y_train"]

    def make(xs: np.ndarray, ys: np.ndarray, split: str) -> Dataset:
        return Dataset(x=xs, y=ys, class_names=names, source=f"cifar10:{split}", name=f"cifar10-{split}")

    return Splits(
        train=make(x[train_idx], y[train_idx], "train"),
        val=make(x[val_idx], y[val_idx], "val"),
        test=make(arrays["x_test"], arrays["y_test"], "test"),
    )
