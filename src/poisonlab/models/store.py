"""The model registry index: a small SQLite database listing saved models with versions and lineage.

The database lives at ``$POISONLAB_HOME/registry.sqlite`` (default ``~/.cache/poisonlab``). It
indexes model folders; the folders (weights + ``model.json``) stay the source of truth.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, load_model, read_card

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    arch TEXT NOT NULL,
    path TEXT NOT NULL,
    parent_id TEXT,
    dataset_name TEXT,
    dataset_hash TEXT,
    created_at TEXT NOT NULL,
    metrics TEXT NOT NULL
)
"""


def poisonlab_home() -> Path:
    """``$POISONLAB_HOME`` or ``~/.cache/poisonlab``."""
    return Path(os.environ.get("POISONLAB_HOME") or Path.home() / ".cache" / "poisonlab")


@dataclass(frozen=True)
class RegistryEntry:
    id: str
    name: str
    version: int
    arch: str
    path: str
    parent_id: str | None
    dataset_name: str | None
    dataset_hash: str | None
    created_at: str
    metrics: dict


class ModelStore:
    """SQLite-backed index of saved models.

    Parameters
    ----------
    db_path : str or Path, optional
        Database file; ``$POISONLAB_HOME/registry.sqlite`` by default.
    """

    def __init__(self, db_path: str | Path | None = None) -> None:
        self.db_path = Path(db_path) if db_path else poisonlab_home() / "registry.sqlite"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def register(self, card: ModelCard, path: str | Path) -> RegistryEntry:
        """Index a saved model; the same id registered again updates its path and metrics."""
        path = str(Path(path).resolve())
        with self._connect() as db:
            row = db.execute("SELECT version FROM models WHERE id = ?", (card.id,)).fetchone()
            if row is None:
                prev = db.execute("SELECT MAX(version) FROM models WHERE name = ?", (card.name,)).fetchone()[
                    0
                ]
                version = (prev or 0) + 1
            else:
                version = row["version"]
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    card.id,
                    card.name,
                    version,
                    card.arch,
                    path,
                    card.parent_id,
                    card.dataset_name,
                    card.dataset_hash,
                    card.created_at,
                    json.dumps(card.metrics),
                ),
            )
        return self.get(card.id)

    def list(self) -> list[RegistryEntry]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM models ORDER BY created_at, name, version").fetchall()
        return [_entry(r) for r in rows]

    def get(self, model_id: str) -> RegistryEntry:
        """Entry by exact name (newest version), ``name:version``, full id or unique id prefix."""
        name, sep, ver = model_id.partition(":")
        if sep and not ver.isdigit():
            raise ValueError(f"model version must be a number, got {model_id!r} (use name:3)")
        with self._connect() as db:
            q = "SELECT * FROM models WHERE name = ?" + (" AND version = ?" if sep else "")
            params = (name, int(ver)) if sep else (name,)
            rows = db.execute(q + " ORDER BY version DESC LIMIT 1", params).fetchall()
            if not rows and not sep:
                # substr, not LIKE: '_' and '%' in an id are literal characters here
                rows = db.execute(
                    "SELECT * FROM models WHERE substr(id, 1, ?) = ?", (len(model_id), model_id)
                ).fetchall()
        if not rows:
            raise ValueError(
                f"no model {model_id!r} in the registry {self.db_path}; see `poisonlab models list`"
            )
        if len(rows) > 1:
            raise ValueError(f"model id prefix {model_id!r} is ambiguous: {[r['id'] for r in rows]}")
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


def _entry(row: sqlite3.Row) -> RegistryEntry:
    data = dict(row)
    data["metrics"] = json.loads(data["metrics"])
    return RegistryEntry(**data)


def resolve_model_path(ref: str | Path, store: ModelStore | None = None) -> Path:
    """A model folder from a path or a registry reference (id, id prefix, name, name:version)."""
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
        A model folder, or a registry id, id prefix, name or name:version.
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
