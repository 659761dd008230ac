"""Everything one running service holds: settings, database, blob store, serving model, monitors.

:class:`ServiceState` is created by :func:`poisonlab.service.app.create_app` and reached by the
routers through the dependencies of :mod:`poisonlab.service.deps`; the training pipeline takes it
as its context, so the pipeline can run (and be tested) without HTTP.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from sqlalchemy import func, select

from poisonlab.data.catalog import DATASETS, load_splits
from poisonlab.data.dataset import Splits
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard
from poisonlab.models.store import load_model_ref
from poisonlab.service.alerts import raise_alert
from poisonlab.service.audit import SYSTEM, AnonymousRefusals
from poisonlab.service.auth import KeyCache
from poisonlab.service.contributions import Policy
from poisonlab.service.db import Alert, Contribution, Database
from poisonlab.service.decode_budget import DecodeBudget
from poisonlab.service.monitoring import ServiceMetrics, ShiftMonitor, ShiftResult
from poisonlab.service.ratelimit import TokenBuckets
from poisonlab.service.registry import promote, register_version, serving_version
from poisonlab.service.run_claims import worker_identity
from poisonlab.service.runs import TrainingWorker
from poisonlab.service.serving import Loaded, ModelServer
from poisonlab.service.settings import ServiceSettings
from poisonlab.service.signing import prune_nonces
from poisonlab.service.storage import BlobStore

log = logging.getLogger("poisonlab.service")


def base_dataset_name(settings: ServiceSettings, card: ModelCard) -> str | None:
    """``digits`` / ``cifar10`` from the settings, else from the card's dataset name (``digits-train``)."""
    if settings.base_dataset:
        return settings.base_dataset
    name = (card.dataset_name or "").split("-")[0].lower()
    return name if name in DATASETS else None


def reference_distribution(model: PoisonlabModel, splits: Splits, device: str = "cpu") -> list[float]:
    """The model's predicted-class shares on the trusted validation split (the shift baseline)."""
    pred = forward_pass(model, splits.val.x, device=device).predictions
    counts = np.bincount(pred, minlength=model.num_classes)
    return (counts / max(1, counts.sum())).round(6).tolist()


class ServiceState:
    """The service's components; see the module docstring."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database_url)
        self.store = BlobStore(settings.blob_dir)
        self.keys = KeyCache(self.db)
        self.policy = Policy(
            unsigned=settings.unsigned_policy,
            unknown_source=settings.unknown_source_policy,
            signature_max_skew=settings.signature_max_skew_s,
        )
        # abuse control: per-key and per-address token buckets, sampled audit of anonymous refusals
        self.key_buckets = TokenBuckets(settings.rate_limit_per_key, settings.rate_limit_key_burst)
        self.address_buckets = TokenBuckets(
            settings.rate_limit_anonymous, settings.rate_limit_anonymous_burst
        )
        self.anonymous_refusals = AnonymousRefusals(settings.anonymous_audit_window_s)
        # memory of the image decodes running at once, all requests together
        self.decode_budget = DecodeBudget(settings.decode_budget_bytes, max_wait_s=settings.decode_wait_s)
        self._orphan_timer: threading.Timer | None = None
        self.server = ModelServer(
            self.db,
            device=settings.device,
            precision=settings.precision,
            workers=settings.inference_workers,
            max_batch=settings.inference_batch,
        )
        self.metrics = ServiceMetrics(self._database_gauges)
        self.monitor = ShiftMonitor(
            window=settings.shift_window,
            check_every=settings.shift_check_every,
            min_count=settings.shift_min_count,
            tv_threshold=settings.shift_tv_threshold,
            alpha=settings.shift_alpha,
        )
        self.worker: TrainingWorker | None = None  # set by create_app (it knows the pipeline)
        self.worker_id = worker_identity()  # the claimant of the training runs this process executes
        self._splits: dict[str, Splits] = {}
        self._splits_lock = threading.Lock()

    def base_splits(self, card: ModelCard) -> Splits | None:
        """The trusted data behind ``card`` (cached), or None when it cannot be identified or loaded."""
        name = base_dataset_name(self.settings, card)
        if name is None:
            return None
        with self._splits_lock:
            if name not in self._splits:
                try:
                    self._splits[name] = load_splits(name, data_dir=self.settings.base_data_dir)
                except (OSError, ValueError) as exc:
                    log.warning("trusted base data %s unavailable: %s", name, exc)
                    return None
            return self._splits[name]

    def bootstrap(self) -> Loaded | None:
        """Serve ``settings.model_ref`` when the database names no serving model; load the serving model."""
        with self.db.read() as session:
            serving = serving_version(session)
        if serving is None and self.settings.model_ref:
            model, card, path = load_model_ref(self.settings.model_ref)
            splits = self.base_splits(card)
            reference = (
                None if splits is None else reference_distribution(model, splits, self.settings.device)
            )
            with self.db.write() as session:  # registered and serving together, or neither
                register_version(session, path, actor=SYSTEM, reference=reference)
                promote(session, card.id, actor=SYSTEM, action="models.bootstrap")
        return self.server.reload()

    def observe_predictions(self, loaded: Loaded, labels: np.ndarray) -> ShiftResult | None:
        """Count served predictions (in memory, no I/O); a fired shift test is returned for
        :meth:`raise_shift_alert`."""
        for k, n in zip(*np.unique(labels, return_counts=True), strict=True):
            self.metrics.predictions.labels(loaded.class_names[int(k)]).inc(int(n))
        result = self.monitor.observe(loaded.version_id, labels.tolist(), loaded.reference)
        return result if result is not None and result.fired else None

    def raise_shift_alert(self, loaded: Loaded, result: ShiftResult) -> None:
        """Store a ``prediction_shift`` alert (one open alert per model)."""
        with self.db.write() as session:
            raise_alert(
                session,
                "prediction_shift",
                f"served predictions of {loaded.version_id} drifted from its validation distribution "
                f"(total variation {result.tv_distance:.3f} over the last {result.n}, "
                f"p={result.p_value:.2g})",
                model_id=loaded.version_id,
                details=result.__dict__,
                dedupe=True,
            )

    def _database_gauges(self) -> dict[str, tuple[str, str, dict[str, float]]]:
        with self.db.read() as session:
            rows = session.execute(
                select(Contribution.status, func.count()).group_by(Contribution.status)
            ).all()
            open_alerts = session.execute(
                select(Alert.kind, func.count()).where(Alert.resolved_at.is_(None)).group_by(Alert.kind)
            ).all()
        by_status = {s: 0.0 for s in ("pending", "accepted", "quarantined", "rejected")}
        by_status.update({status: float(n) for status, n in rows})
        return {
            "imrecs_contributions": ("Stored contributions by status", "status", by_status),
            "imrecs_alerts_open": ("Open alerts by kind", "kind", {k: float(n) for k, n in open_alerts}),
        }

    def housekeeping(self) -> None:
        """Start-up clean-up: expired signature nonces, and blob files no row references.

        Unreferenced files younger than ``orphan_grace_s`` are kept (another process may be about to
        commit their row); when there are any, one more collection runs once they are old enough.
        """
        with self.db.write() as session:
            prune_nonces(session)
        _deleted, young = self.collect_orphans()
        if young and self.settings.orphan_grace_s > 0:
            timer = threading.Timer(self.settings.orphan_grace_s + 1, self._collect_later)
            timer.daemon = True
            timer.start()
            self._orphan_timer = timer

    def collect_orphans(self, *, now: float | None = None) -> tuple[int, int]:
        """Delete the store's orphan blobs (see :meth:`BlobStore.collect_orphans`); (deleted, kept young)."""

        def referenced(prefix: str) -> list[str]:
            # one folder's digests at a time: memory stays bounded however many contributions exist
            query = select(Contribution.sha256).where(
                Contribution.sha256 >= prefix, Contribution.sha256 < prefix + "g"
            )
            with self.db.read() as session:
                return list(session.scalars(query))

        deleted, young = self.store.collect_orphans(referenced, grace_s=self.settings.orphan_grace_s, now=now)
        self.metrics.orphans_collected.inc(deleted)
        log.log(
            logging.WARNING if deleted else logging.INFO,
            "orphan collection: deleted %d blob files no database row references, kept %d (under %g s old)",
            deleted,
            young,
            self.settings.orphan_grace_s,
        )
        return deleted, young

    def _collect_later(self) -> None:
        try:
            self.collect_orphans()
        except Exception:  # a background clean-up must never take the service down
            log.exception("deferred orphan collection failed")

    def close(self) -> None:
        """Stop the inference threads and close the database's connections."""
        if self._orphan_timer is not None:
            self._orphan_timer.cancel()
        self.server.close()
        self.db.dispose()
