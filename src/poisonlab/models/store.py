"""The model registry: a small SQLite database with one entry per training run.

The database lives at ``$POISONLAB_HOME/registry.sqlite`` (default ``~/.cache/poisonlab``). It
indexes model folders; the folders (weights + ``model.json`` + ``run.json``) stay the source of
truth.

An entry is a *run*: its ``run_id`` is new for every registration and its ``id`` is the model id
(``<arch>-<weights sha256 prefix>``). Entries are never renamed, re-pointed or replaced:
registering the same weights twice (a deterministic rerun, a copy of a folder) gives two runs
that share the model id, each with its own folder and version. Versions count the runs of a
name (``exp:1``, ``exp:2``, ...).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, load_model, read_card
from poisonlab.provenance import new_run_id
from poisonlab.reprs import concise_repr

_COLUMNS = (
    "run_id",
    "id",
    "name",
    "version",
    "arch",
    "path",
    "parent_id",
    "dataset_name",
    "dataset_hash",
    "created_at",
    "registered_at",
    "metrics",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    arch TEXT NOT NULL,
    path TEXT NOT NULL,
    parent_id TEXT,
    dataset_name TEXT,
    dataset_hash TEXT,
    created_at TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    metrics TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS runs_by_id ON runs (id);
"""


def poisonlab_home() -> Path:
    """``$POISONLAB_HOME`` or ``~/.cache/poisonlab``."""
    return Path(os.environ.get("POISONLAB_HOME") or Path.home() / ".cache" / "poisonlab")


@dataclass(frozen=True)
class RegistryEntry:
    """One registered training run.

    Attributes
    ----------
    run_id : str
        Unique per registration (``run-<time>-<hex>``).
    id : str
        The model id, ``<arch>-<weights sha256 prefix>``; shared by runs with identical weights.
    name, version : str, int
        The run's name and its number among the runs of that name (from 1).
    arch, path : str
        Architecture and the model folder (absolute).
    parent_id : str or None
        Model id of the model it was fine-tuned from.
    dataset_name, dataset_hash : str or None
        The training data.
    created_at, registered_at : str
        When the model was saved and when the run was registered (UTC, ISO 8601).
    metrics : dict
        The card's metrics at registration.
    """

    run_id: str
    id: str
    name: str
    version: int
    arch: str
    path: str
    parent_id: str | None
    dataset_name: str | None
    dataset_hash: str | None
    created_at: str
    registered_at: str
    metrics: dict

    def __repr__(self) -> str:
        acc = self.metrics.get("test_accuracy")
        return concise_repr(
            self, run_id=self.run_id, id=self.id, name=f"{self.name}:{self.version}", test_accuracy=acc
        )


class ModelStore:
    """SQLite-backed index of training runs (see the module docstring).

    Parameters
    ----------
    db_path : str or Path, optional
        Database file; ``$POISONLAB_HOME/registry.sqlite`` by default.
    """

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.db_path = Path(db_path) if db_path else poisonlab_home() / "registry.sqlite"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            _migrate_v1(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (writers open their own transaction), then closed."""
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def register(self, card: ModelCard, path: str | Path, *, run_id: str | None = None) -> RegistryEntry:
        """Add a run for the model saved in ``path``: always a new entry, never an update.

        Parameters
        ----------
        card : ModelCard
            The saved model's card.
        path : str or Path
            Its folder.
        run_id : str, optional
            The run's id (as written in its ``run.json``); default a new one.

        Returns
        -------
        RegistryEntry

        Raises
        ------
        ValueError
            When ``run_id`` is already registered for another model or folder (registering the
            very same run again returns its entry unchanged).
        """
        folder = str(Path(path).resolve())
        run_id = run_id or new_run_id()
        with self._connect() as db, _transaction(db):  # the version and the insert are one step
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                return _same_run(_entry(row), card, folder)
            prev = db.execute("SELECT MAX(version) FROM runs WHERE name = ?", (card.name,)).fetchone()[0]
            values = _row_values(card, folder, run_id, (prev or 0) + 1)
            db.execute(f"INSERT INTO runs VALUES ({','.join('?' * len(_COLUMNS))})", values)
        return self.get(run_id)

    def list(self) -> list[RegistryEntry]:
        """Every run, oldest registration first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY registered_at, name, version").fetchall()
        return [_entry(r) for r in rows]

    def runs_of(self, model_id: str) -> list[RegistryEntry]:
        """The runs that produced the model ``model_id`` (same weights), oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs WHERE id = ? ORDER BY version", (model_id,)).fetchall()
        return [_entry(r) for r in rows]

    def get(self, ref: str) -> RegistryEntry:
        """A run by run id (or unique prefix), name (newest version), ``name:version``, or model id.

        A model id (or unique prefix) shared by several runs gives the newest of them: they hold
        the same weights.
        """
        name, sep, ver = ref.partition(":")
        if sep and not ver.isdigit():
            raise ValueError(f"model version must be a number, got {ref!r} (use name:3)")
        with self._connect() as db:
            if sep:
                rows = db.execute("SELECT * FROM runs WHERE name = ? AND version = ?", (name, int(ver)))
                return self._one(ref, rows.fetchall())
            for query in (
                "SELECT * FROM runs WHERE run_id = ?",
                "SELECT * FROM runs WHERE name = ? ORDER BY version DESC LIMIT 1",
            ):
                rows = db.execute(query, (ref,)).fetchall()
                if rows:
                    return _entry(rows[0])
            # substr, not LIKE: '_' and '%' in an id are literal characters here
            for column in ("id", "run_id"):
                rows = db.execute(
                    f"SELECT * FROM runs WHERE substr({column}, 1, ?) = ? ORDER BY registered_at DESC",
                    (len(ref), ref),
                ).fetchall()
                if rows:
                    return self._newest_of_one_model(ref, rows, column)
        return self._one(ref, [])

    def _one(self, ref: str, rows: list[sqlite3.Row]) -> RegistryEntry:
        if not rows:
            raise ValueError(f"no model {ref!r} in the registry {self.db_path}; see `poisonlab models list`")
        return _entry(rows[0])

    @staticmethod
    def _newest_of_one_model(ref: str, rows: list[sqlite3.Row], column: str) -> RegistryEntry:
        distinct = sorted({r[column] for r in rows})
        if len(distinct) > 1:
            raise ValueError(f"model id prefix {ref!r} is ambiguous: {distinct}")
        return _entry(rows[0])

    def lineage(self, model_id: str) -> list[RegistryEntry]:
        """The model and its ancestors, newest first (stops at an ancestor not in the registry)."""
        chain, seen = [], set()
        entry: RegistryEntry | None = self.get(model_id)
        while entry is not None and entry.id not in seen:
            chain.append(entry)
            seen.add(entry.id)
            try:
                entry = self.get(entry.parent_id) if entry.parent_id else None
            except ValueError:
                entry = None
        return chain


def _row_values(card: ModelCard, folder: str, run_id: str, version: int) -> tuple:
    registered = datetime.now(UTC).isoformat(timespec="microseconds")  # orders runs of one second
    return (
        run_id,
        card.id,
        card.name,
        version,
        card.arch,
        folder,
        card.parent_id,
        card.dataset_name,
        card.dataset_hash,
        card.created_at,
        registered,
        json.dumps(card.metrics),
    )


def _same_run(entry: RegistryEntry, card: ModelCard, folder: str) -> RegistryEntry:
    """The entry of a run registered again, unchanged; an error if the run id points elsewhere."""
    if entry.id != card.id or entry.path != folder:
        raise ValueError(
            f"run {entry.run_id} is already registered for {entry.id} in {entry.path}, got {card.id} "
            f"in {folder}: a run is never re-pointed; register a new run instead"
        )
    return entry


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Move the entries of the old ``models`` table (one per model id) into ``runs``, once.

    The old table is renamed ``models_v1`` (kept as it was) so the move never repeats. An older
    poisonlab sharing the registry may create ``models`` again after that: its rows are moved the
    same way and appended to ``models_v1``.
    """
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'models'"
    if db.execute(query).fetchone() is None:
        return
    with _transaction(db):
        if db.execute(query).fetchone() is None:  # another process migrated meanwhile
            return
        db.execute(
            "INSERT OR IGNORE INTO runs SELECT 'run-v1-' || id, id, name, version, arch, path, parent_id, "
            "dataset_name, dataset_hash, created_at, created_at, metrics FROM models"
        )
        kept = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'models_v1'"
        if db.execute(kept).fetchone() is None:
            db.execute("ALTER TABLE models RENAME TO models_v1")
        else:  # migrated before; an older version wrote to a new ``models`` table since
            db.execute("INSERT OR IGNORE INTO models_v1 SELECT * FROM models")
            db.execute("DROP TABLE models")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the write lock at once) ... ``COMMIT``, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _entry(row: sqlite3.Row) -> RegistryEntry:
    data = dict(row)
    data["metrics"] = json.loads(data["metrics"])
    return RegistryEntry(**data)


def resolve_model_path(ref: str | Path, store: ModelStore | None = None) -> Path:
    """A model folder from a path or a registry reference (run id, model id or a unique prefix of
    either, name, name:version)."""
    path = Path(ref)
    if path.is_dir():
        read_card(path)  # a clear error if it is not a saved model
        return path
    store = store or ModelStore()
    try:
        entry = store.get(str(ref))
    except ValueError as exc:
        raise FileNotFoundError(f"{ref} is neither a model folder nor a registered model ({exc})") from exc
    return Path(entry.path)


def load_model_ref(
    ref: str | Path, store: ModelStore | None = None
) -> tuple[PoisonlabModel, ModelCard, Path]:
    """Load a model from a folder path or a registry reference; its weights hash is verified.

    Parameters
    ----------
    ref
        A model folder, or a registry reference (see :meth:`ModelStore.get`).
    store
        The registry to look ``ref`` up in (default: the user's).

    Returns
    -------
    tuple
        The model, its card and its folder.
    """
    path = resolve_model_path(ref, store)
    model, card = load_model(path)
    return model, card, path
