"""Monitoring: the prediction-shift test, its alert, and the Prometheus exposition."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poisonlab.service.monitoring import ShiftMonitor, prediction_shift

UNIFORM = np.full(10, 0.1)


def test_shift_fires_only_on_a_large_significant_shift():
    balanced = np.full(10, 30)
    assert not prediction_shift(balanced, UNIFORM).fired
    skewed = balanced.copy()
    skewed[7] += 300  # half of everything is now "7"
    result = prediction_shift(skewed, UNIFORM)
    assert result.fired and result.tv_distance == pytest.approx(0.45, abs=0.01) and result.p_value < 1e-10
    few = np.zeros(10)
    few[7] = 100  # total variation 0.9, but fewer than min_count predictions
    assert not prediction_shift(few, UNIFORM, min_count=200).fired
    small = balanced.copy()
    small[7] += 20  # significant with enough data, but a small shift
    assert not prediction_shift(small * 100, UNIFORM).fired


def test_shift_handles_classes_the_model_never_predicts():
    ref = np.array([0.5, 0.5, 0.0])
    result = prediction_shift(np.array([0, 0, 300]), ref)
    assert np.isfinite(result.chi2) and result.fired
    with pytest.raises(ValueError, match="non-negative"):
        prediction_shift(np.array([1, 2]), np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="two"):
        prediction_shift(np.array([1, 2, 3]), np.array([0.5, 0.5]))


def test_monitor_window_and_model_switch():
    monitor = ShiftMonitor(window=100, check_every=25, min_count=50)
    assert monitor.observe("a", [7] * 20, list(UNIFORM)) is None  # not due yet
    result = monitor.observe("a", [7] * 40, list(UNIFORM))
    assert result is not None and result.n == 60 and result.fired
    assert monitor.observe("b", [7] * 30, list(UNIFORM)).n == 30  # a new model starts a new window
    assert monitor.observe("b", [7] * 30, None) is None  # no reference: nothing to compare with


def test_skewed_traffic_raises_one_alert(make_service, digits):
    svc = make_service(shift_window=200, shift_min_count=50, shift_check_every=10)
    viewer = svc.headers("viewer")
    mixed = digits.test.x[:60].tolist()
    svc.client.post("/v1/predict/batch", json={"instances": mixed}, headers=viewer)
    assert svc.client.get("/v1/alerts", headers=viewer).json() == []
    sevens = digits.test.x[digits.test.y == 7][:30].tolist()
    for _ in range(4):
        svc.client.post("/v1/predict/batch", json={"instances": sevens}, headers=viewer)
    alerts = svc.client.get("/v1/alerts?open_only=true", headers=viewer).json()
    assert [a["kind"] for a in alerts] == ["prediction_shift"]
    assert alerts[0]["model_id"] == svc.state.server.current().version_id
    assert alerts[0]["details"]["tv_distance"] >= 0.25
    resolved = svc.client.post(f"/v1/alerts/{alerts[0]['id']}/resolve", headers=svc.headers("admin")).json()
    assert resolved["resolved_at"] is not None


def test_metrics_exposition(service, png, digits):
    viewer = service.headers("viewer")
    for image in digits.test.x[:5]:
        service.client.post("/v1/predict", files={"file": ("d.png", png(image))}, headers=viewer)
    service.client.post("/v1/predict", files={"file": ("d.png", b"junk")}, headers=viewer)
    service.client.post(
        "/v1/contributions",
        files={"file": ("d.png", png(digits.test.x[0]))},
        data={"label": "0"},
        headers=service.headers("contributor"),
    )
    text = service.client.get("/metrics", headers=viewer).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["imrecs_requests"].samples
        if s.name == "imrecs_requests_total"
    }
    assert requests[("/v1/predict", "200")] == 5 and requests[("/v1/predict", "422")] == 1
    predicted = sum(s.value for s in families["imrecs_predictions"].samples)
    assert predicted == 5
    buckets = [s for s in families["imrecs_request_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["route"] == "/v1/predict" and s.value == 6 for s in buckets)
    stored = {s.labels["status"]: s.value for s in families["imrecs_contributions"].samples}
    assert stored["quarantined"] == 1 and stored["pending"] == 0
    assert "imrecs_gate_failures" in families and "imrecs_alerts_open" in families
