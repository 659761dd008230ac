"""Monitoring: Prometheus metrics and the served-prediction distribution-shift monitor.

A poisoning campaign that succeeds shows up in production as predictions drifting towards the
attacker's class. :class:`ShiftMonitor` keeps the last ``window`` served predictions and, every
``check_every`` predictions once at least ``min_count`` are in, compares their class histogram
with the serving model's predicted-class distribution on its trusted validation data. It fires
when both the total-variation distance ``0.5 * sum_k |p_k - q_k|`` reaches ``tv_threshold`` (the
shift is large) and Pearson's chi-square goodness-of-fit test rejects at level ``alpha`` (the
shift is not sampling noise). The chi-square test is Pearson (1900), Philosophical Magazine 50(302).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from scipy.stats import chisquare

disable_created_metrics()  # the *_created series double the exposition and nothing here reads them
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass(frozen=True)
class ShiftResult:
    """Outcome of one shift test: ``fired`` when both thresholds are crossed with enough data."""

    n: int
    tv_distance: float
    chi2: float
    p_value: float
    fired: bool
    observed: list[float]
    expected: list[float]


def prediction_shift(
    counts: np.ndarray,
    reference: np.ndarray,
    *,
    min_count: int = 200,
    tv_threshold: float = 0.25,
    alpha: float = 1e-3,
) -> ShiftResult:
    """Compare served class ``counts`` (K,) with the ``reference`` class distribution (K,).

    ``reference`` is normalised and floored at 0.5 / n per class before the chi-square test, so a
    class the model never predicted on clean data does not make the statistic infinite.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if counts.ndim != 1 or ref.shape != counts.shape or counts.size < 2:
        raise ValueError(
            f"counts and reference must be two (K,) vectors with K >= 2, got {counts.shape}, {ref.shape}"
        )
    if (counts < 0).any() or (ref < 0).any() or ref.sum() <= 0:
        raise ValueError("counts and reference must be non-negative, reference with a positive sum")
    n = int(counts.sum())
    q = ref / ref.sum()
    p = counts / n if n else np.zeros_like(q)
    tv = 0.5 * float(np.abs(p - q).sum())
    chi2, p_value = 0.0, 1.0
    if n:
        floor = np.maximum(q, 0.5 / n)
        expected = floor / floor.sum() * n
        chi2, p_value = (float(v) for v in chisquare(counts, expected))
    fired = n >= min_count and tv >= tv_threshold and p_value < alpha
    return ShiftResult(n, tv, chi2, p_value, bool(fired), p.round(4).tolist(), q.round(4).tolist())


class ShiftMonitor:
    """Thread-safe window of served predictions for one model version."""

    def __init__(self, *, window: int = 500, check_every: int = 50, **test_params: float) -> None:
        if window < 1 or check_every < 1:
            raise ValueError(f"window and check_every must be >= 1, got {window}, {check_every}")
        self.window, self.check_every, self.test_params = window, check_every, test_params
        self._preds: deque[int] = deque(maxlen=window)
        self._since_check = 0
        self._model_id: str | None = None
        self._lock = threading.Lock()

    def observe(
        self, model_id: str, labels: Iterable[int], reference: list[float] | None
    ) -> ShiftResult | None:
        """Add served labels; returns a test result when one is due (None otherwise)."""
        with self._lock:
            if model_id != self._model_id:  # a promotion: the old model's window says nothing
                self._preds.clear()
                self._model_id, self._since_check = model_id, 0
            new = [int(v) for v in labels]
            self._preds.extend(new)
            self._since_check += len(new)
            if reference is None or self._since_check < self.check_every:
                return None
            self._since_check = 0
            counts = np.bincount(np.fromiter(self._preds, np.int64), minlength=len(reference))
        return prediction_shift(counts[: len(reference)], np.asarray(reference), **self.test_params)


class ServiceMetrics:
    """The service's Prometheus metrics in their own registry (one per app, so tests can build many).

    ``gauges`` is called at scrape time and returns ``{metric name: (help, {label value: value})}``
    for values read from the database (contributions by status, open alerts).
    """

    def __init__(self, gauges: Callable[[], dict[str, tuple[str, str, dict[str, float]]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "imrecs_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "imrecs_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "imrecs_predictions", "Served predictions by class", ["class_name"], registry=self.registry
        )
        self.contributions = Counter(
            "imrecs_contributions_received",
            "Contributions received by initial status",
            ["status"],
            registry=self.registry,
        )
        self.gate_failures = Counter(
            "imrecs_gate_failures",
            "Promotion gates failed by training runs",
            ["gate"],
            registry=self.registry,
        )
        self.training_runs = Counter(
            "imrecs_training_runs", "Finished training runs by outcome", ["outcome"], registry=self.registry
        )
        self.rate_limited = Counter(
            "imrecs_rate_limited",
            "Requests refused with 429 by the rate limiter, by bucket (key or client address)",
            ["bucket"],
            registry=self.registry,
        )
        self.anonymous_refusals = Counter(
            "imrecs_anonymous_refusals",
            "Requests refused without a valid API key, by status (the audit log samples them)",
            ["status"],
            registry=self.registry,
        )
        self.orphans_collected = Counter(
            "imrecs_orphan_blobs_collected",
            "Blob files no database row referenced, deleted by the orphan collection",
            registry=self.registry,
        )
        self.registry.register(_DatabaseGauges(gauges))


class _DatabaseGauges:
    def __init__(self, read: Callable[[], dict[str, tuple[str, str, dict[str, float]]]]) -> None:
        self.read = read

    def describe(self) -> list:
        return []

    def collect(self):
        for name, (help_text, label, values) in self.read().items():
            family = GaugeMetricFamily(name, help_text, labels=[label])
            for value_label, value in values.items():
                family.add_metric([value_label], value)
            yield family
