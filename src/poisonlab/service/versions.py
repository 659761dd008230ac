"""Model versions: the service's registry (in its database) and the in-memory serving model.

Each version row points at a saved model folder (``weights.safetensors`` + ``model.json``,
loaded with :func:`poisonlab.models.checkpoint.load_model`, which checks the weights' sha256) and
records its parent, metrics, the hash of the data snapshot it was trained on and its status:
``serving`` (exactly one), ``retired`` (served before), ``candidate`` (registered, never served)
or ``rejected`` (failed a promotion gate). Promotion and rollback switch the serving row in one
transaction; :class:`ModelServer` notices the switch and loads the new weights.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from poisonlab.device import resolve_device, use_bf16
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, load_model, read_card
from poisonlab.service.audit import Actor, record
from poisonlab.service.batching import InferenceQueue
from poisonlab.service.db import Database, ModelVersion, utcnow

STATUSES = ("serving", "retired", "candidate", "rejected")


def register_version(
    db: Database,
    path: str | Path,
    *,
    actor: Actor,
    status: str = "candidate",
    metrics: dict | None = None,
    snapshot_hash: str | None = None,
    reference: list[float] | None = None,
    run_id: int | None = None,
) -> ModelVersion:
    """Add the saved model at ``path`` (its card gives id and parent); an existing id is kept as is."""
    if status not in ("candidate", "rejected"):
        raise ValueError(f"a new version starts as candidate or rejected, got {status!r}")
    card = read_card(path)
    with db.write() as session:
        row = session.get(ModelVersion, card.id)
        if row is not None:
            return row
        row = ModelVersion(
            id=card.id,
            path=str(Path(path).resolve()),
            parent_id=card.parent_id,
            status=status,
            metrics={**card.metrics, **(metrics or {})},
            data_snapshot_hash=snapshot_hash or card.dataset_hash,
            reference_distribution=None if reference is None else {"predicted": list(reference)},
            training_run_id=run_id,
        )
        session.add(row)
        record(session, actor, "models.register", f"model:{card.id}", f"ok: {status}")
    return row


def serving_version(db: Database) -> ModelVersion | None:
    with db.read() as session:
        return session.scalar(select(ModelVersion).where(ModelVersion.status == "serving"))


def get_version(db: Database, version_id: str) -> ModelVersion:
    """LookupError when unknown."""
    with db.read() as session:
        row = session.get(ModelVersion, version_id)
    if row is None:
        raise LookupError(f"no model version {version_id!r}")
    return row


def list_versions(db: Database) -> list[ModelVersion]:
    with db.read() as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())))


def lineage(db: Database, version_id: str) -> list[ModelVersion]:
    """The version and its ancestors known to the service, newest first."""
    chain: list[ModelVersion] = []
    seen: set[str] = set()
    with db.read() as session:
        row = session.get(ModelVersion, version_id)
        while row is not None and row.id not in seen:
            chain.append(row)
            seen.add(row.id)
            row = session.get(ModelVersion, row.parent_id) if row.parent_id else None
    return chain


def promote(
    db: Database, version_id: str, *, actor: Actor, force: bool = False, action: str = "models.promote"
):
    """Make ``version_id`` the serving model; the current one becomes ``retired``.

    Its weights are loaded (and their hash checked) before the switch. A ``rejected`` version
    needs ``force``. Raises LookupError (unknown id) or ValueError (refused).
    """
    target = get_version(db, version_id)
    if target.status == "serving":
        return target
    if target.status == "rejected" and not force:
        raise ValueError(
            f"model {version_id} failed a promotion gate; promote it with force=true to override"
        )
    load_model(target.path)  # refuse weights that are missing or were tampered with
    with db.write() as session:
        for row in session.scalars(select(ModelVersion).where(ModelVersion.status == "serving")):
            row.status = "retired"
        row = session.get(ModelVersion, version_id)
        row.status, row.served_at = "serving", utcnow()
        record(session, actor, action, f"model:{version_id}", "ok" + (" (forced)" if force else ""))
    return row


def rollback_target(db: Database) -> ModelVersion:
    """The version served before the current one (ValueError when there is none)."""
    with db.read() as session:
        current = session.scalar(select(ModelVersion).where(ModelVersion.status == "serving"))
        query = select(ModelVersion).where(
            ModelVersion.status == "retired", ModelVersion.served_at.is_not(None)
        )
        previous = session.scalars(query.order_by(ModelVersion.served_at.desc())).first()
    if previous is None:
        raise ValueError("no previously served model to roll back to")
    if current is not None and previous.id == current.id:  # pragma: no cover - statuses exclude it
        raise ValueError("the previous model is the serving one")
    return previous


@dataclass(frozen=True)
class Loaded:
    """The serving model in memory."""

    version_id: str
    model: PoisonlabModel
    card: ModelCard
    reference: list[float] | None = None  # predicted-class shares on trusted validation data

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.card.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.card.input_shape


class ModelServer:
    """Holds the serving model and follows the database's ``serving`` row.

    :meth:`current` re-reads the serving id at most every ``refresh_seconds`` (so several
    processes sharing one database converge after a promotion) and loads new weights once.
    """

    def __init__(
        self,
        db: Database,
        *,
        device: str = "cpu",
        refresh_seconds: float = 1.0,
        workers: int = 1,
        max_batch: int = 64,
    ) -> None:
        self.db = db
        self.device = device
        self.refresh_seconds = refresh_seconds
        # decided once: "auto" would re-read /proc/cpuinfo on every pass
        self.precision = "bf16" if use_bf16("auto", resolve_device(device)) else "fp32"
        self.max_batch = max_batch
        self.queue = InferenceQueue(self._forward, workers=workers, max_batch=max_batch)
        self._loaded: Loaded | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def reload(self) -> Loaded | None:
        """Load the serving version now (None when the database names none)."""
        row = serving_version(self.db)
        with self._lock:
            self._checked = time.monotonic()
            if row is None:
                self._loaded = None
            elif self._loaded is None or self._loaded.version_id != row.id:
                model, card = load_model(row.path)
                ref = (row.reference_distribution or {}).get("predicted")
                self._loaded = Loaded(row.id, model.eval(), card, ref)
            return self._loaded

    def current(self) -> Loaded | None:
        if time.monotonic() - self._checked > self.refresh_seconds:
            return self.reload()
        return self._loaded

    async def current_async(self) -> Loaded | None:
        """:meth:`current` for the event loop: the database check and a model load run in a thread."""
        if time.monotonic() - self._checked > self.refresh_seconds:
            return await run_in_threadpool(self.reload)
        return self._loaded

    def predict(self, loaded: Loaded, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) float32 of ``loaded`` for uint8 images (N, H, W, C), computed
        in batches shared with concurrent requests (see :mod:`poisonlab.service.batching`)."""
        return self.queue.predict(loaded, images)

    async def predict_async(self, loaded: Loaded, images: np.ndarray) -> np.ndarray:
        """:meth:`predict` awaited on the event loop."""
        return await self.queue.predict_async(loaded, images)

    def _forward(self, loaded: Loaded, images: np.ndarray) -> np.ndarray:
        result = forward_pass(
            loaded.model, images, device=self.device, batch_size=self.max_batch, precision=self.precision
        )
        return result.probabilities

    def close(self) -> None:
        self.queue.close()
