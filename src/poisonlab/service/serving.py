"""Model serving: the serving model's weights in memory and the inference queue in front of them.

:class:`ModelServer` follows the registry's ``serving`` row (:mod:`poisonlab.service.registry`):
a promotion or rollback committed by any process sharing the database is noticed within
``refresh_seconds`` and the new weights are loaded once (their sha256 checked by
:func:`poisonlab.models.checkpoint.load_model`). Predictions go through one
:class:`~poisonlab.service.batching.InferenceQueue`, so concurrent requests share forward passes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, load_model
from poisonlab.service.batching import InferenceQueue
from poisonlab.service.db import Database
from poisonlab.service.registry import serving_version


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

    Parameters
    ----------
    db : Database
        The service's database (read only here).
    device : str
        Torch device of the forward passes.
    precision : {"fp32", "bf16"}
        Arithmetic of the forward passes.
    refresh_seconds : float
        How stale the serving id may get.
    workers : int
        Inference threads.
    max_batch : int
        Largest batch of one forward pass.
    """

    def __init__(
        self,
        db: Database,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        refresh_seconds: float = 1.0,
        workers: int = 1,
        max_batch: int = 64,
    ) -> None:
        self.db = db
        self.device = device
        self.refresh_seconds = refresh_seconds
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.max_batch = max_batch
        self.queue = InferenceQueue(self._forward, workers=workers, max_batch=max_batch)
        self._loaded: Loaded | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def reload(self) -> Loaded | None:
        """Load the serving version now (None when the database names none)."""
        with self.db.read() as session:
            row = serving_version(session)
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
        """The serving model, re-checked against the database when ``refresh_seconds`` passed."""
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
