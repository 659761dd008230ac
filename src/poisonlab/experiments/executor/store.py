"""Where a grid's cells find their models, and where a grid remembers its finished cells.

The *store* is a folder laid out like ``$POISONLAB_HOME``: trained models under ``baselines/``
keyed by the hash of their training data and config (:mod:`poisonlab.experiments.common.cache`),
the model registry, downloaded datasets.  Every cell runs with ``POISONLAB_HOME`` pointing at the
store (:func:`store_home`), so a model one worker trained is a cache hit for every other worker
that sees the same folder: on a cluster, a path every node mounts (NFS, EFS, a Kubernetes
volume).  Nothing but the config and the cell's spec travels with a task; the data is rebuilt
from the config (seeded), the models come from the store by key.

The *cell log* (:class:`CellLog`) is a grid's ``cells.jsonl`` in its output folder: one line per
finished cell, appended and flushed as the cell finishes, so a rerun with ``--resume`` skips
them.  :class:`ProcessMemo` keeps what the cells of one grid share (splits, the clean model)
inside one worker process, so a worker that runs ten cells loads them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CellLog", "ProcessMemo", "fingerprint", "resolve_store", "store_home"]

T = TypeVar("T")
_HOME = "POISONLAB_HOME"
#: a URL's scheme, also after a path normalisation collapsed its "//"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def resolve_store(store: str | os.PathLike[str] | None) -> Path:
    """The store folder: ``store``, else ``$POISONLAB_HOME`` (default ``~/.cache/poisonlab``).

    Parameters
    ----------
    store : path-like, optional
        A folder (created when missing).  On a cluster, a path mounted on every node.

    Returns
    -------
    Path
        Absolute.

    Raises
    ------
    ValueError
        For a URL (``s3://...``: object stores are reached through a mount, not a URL), a path
        that is a file, or a folder that cannot be created (under a file, on a read-only mount).
    """
    if store is None:
        from poisonlab.models.store import poisonlab_home

        return poisonlab_home().expanduser().absolute()
    text = os.fspath(store)
    if _URL.match(text):  # a command-line Path turns "s3://bucket" into "s3:/bucket"
        raise ValueError(
            f"--store must be a folder every worker mounts (NFS, EFS, a Kubernetes volume, a "
            f"bucket through a FUSE mount), got the URL {text!r}"
        )
    path = Path(text).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--store must be a folder, got the file {path}")
    try:  # now, not when the first model is saved (after the clean baseline's minutes)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--store {path}: cannot create the folder ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def store_home(store: str | os.PathLike[str] | None) -> Iterator[None]:
    """Run the block with ``POISONLAB_HOME`` set to ``store`` (None: left as it is), then restore.

    A cell wraps its body in it, so the model cache, the registry and the dataset downloads of a
    worker are the store's.
    """
    if store is None or os.environ.get(_HOME) == os.fspath(store):
        yield
        return
    previous = os.environ.get(_HOME)
    os.environ[_HOME] = os.fspath(store)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_HOME, None)
        else:
            os.environ[_HOME] = previous


class ProcessMemo:
    """A small least-recently-used map of what a grid's cells share inside one process.

    Parameters
    ----------
    size : int
        Entries kept (>= 1); an entry is a grid's shared state (its splits, its clean model).
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, build: Callable[[], T]) -> T:
        """The value of ``key``, built (and kept) on the first call."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        """Drop every entry (a runner frees its models when its grid ends)."""
        self._items.clear()


def fingerprint(settings: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of ``settings`` as canonical JSON (what a grid's figures depend on)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON for what ``json`` does not know: numpy scalars as numbers, anything else as text."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return str(value)


class CellLog:
    """A grid's finished cells, one JSON line each (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``cells.jsonl`` file (its folder is created on the first append).
    grid : str
        The grid's :func:`fingerprint`; a log written for another grid is refused.
    also : collection of str, optional
        Older fingerprints of the same grid whose lines are accepted too (a fingerprint that
        came to leave out a setting the cells do not depend on); new lines carry ``grid``.

    Notes
    -----
    A line is ``{"grid", "key", "record"}`` for a finished cell, ``{"grid", "key", "failed",
    "error", "traceback"}`` for a cell that failed twice (kept for debugging; a rerun runs it
    again).  A last line cut short by a crash is ignored.
    """

    def __init__(self, path: str | os.PathLike[str], grid: str, also: Collection[str] = ()) -> None:
        self.path = Path(path)
        self.grid = grid
        self.accepted = frozenset({grid, *also})

    def _lines(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue

    def finished(self) -> dict[str, dict[str, Any]]:
        """Key -> record of every finished cell.

        Raises
        ------
        ValueError
            When the log holds cells of another grid (another config).
        """
        out: dict[str, dict[str, Any]] = {}
        for entry in self._lines():
            if entry.get("grid") not in self.accepted:
                raise ValueError(
                    f"{self.path} holds cells of another grid (the config changed); use a new --out "
                    "folder, or --overwrite to start again"
                )
            if not entry.get("failed"):
                out[entry["key"]] = entry["record"]
        return out

    def _write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            if not self._ends_clean():  # a crash cut the last line: start a new one
                fh.write("\n")
            fh.write(json.dumps({"grid": self.grid, **entry}, default=_plain) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_clean(self) -> bool:
        """Whether the log is empty or ends with a newline (reads one byte)."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def append(self, key: str, record: dict[str, Any]) -> None:
        """Log a finished cell (flushed to disk before returning)."""
        self._write({"key": key, "record": record})

    def append_failure(self, key: str, error: str, trace: str | None) -> None:
        """Log a cell that failed on every attempt, with its traceback."""
        self._write({"key": key, "failed": True, "error": error, "traceback": trace})

    def reset(self) -> None:
        """Forget every cell (a fresh run in the same folder)."""
        self.path.unlink(missing_ok=True)
