"""The defended continuous-learning pipeline end to end on the digits model.

The attack is the chapter's relabelling: copies of training images of one class contributed with
another label (here every training "1" labelled "7").
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from poisonlab.defenses import DEFENSES
from poisonlab.models.base import PoisonlabModel
from poisonlab.service import contributions as lib
from poisonlab.service import pipeline
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.db import TrainingRun
from poisonlab.service.settings import DEFAULT_DEFENSES
from poisonlab.training import TrainResult

MALLORY = Actor("mallory", "contributor")


def _seed(svc, png, images, labels) -> list[int]:
    """Contribute through the library (same code path as the API, minus HTTP) for speed;
    ``labels`` is one label for all images or one per image."""
    loaded = svc.state.server.current()
    labels = [labels] * len(images) if isinstance(labels, str) else [str(v) for v in labels]
    ids = []
    for image, label in zip(images, labels, strict=True):
        with svc.state.db.write() as session:
            row = lib.submit(
                session,
                svc.state.store,
                lib.Upload(png(image), label),
                actor=MALLORY,
                class_names=loaded.class_names,
                input_shape=loaded.input_shape,
                max_pixels=10**6,
                policy=svc.state.policy,
            )
        ids.append(row.id)
    return ids


def _run(svc, body: dict | None = None, role: str = "trainer", timeout: float = 120.0) -> dict:
    started = svc.client.post("/v1/training-runs", json=body or {}, headers=svc.headers(role))
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = svc.client.get(f"/v1/training-runs/{run_id}", headers=svc.headers("trainer")).json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"training run {run_id} did not finish in {timeout} s: {run}")


def _statuses(svc, ids) -> set[str]:
    with svc.state.db.read() as session:
        return {lib.get_contribution(session, i).status for i in ids}


@pytest.fixture
def poison(digits):
    return digits.train.x[digits.train.y == 1]  # about 118 images, contributed as "7"


def test_clean_contributions_are_trained_and_promoted(make_service, png, digits):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    first = svc.state.server.current().version_id
    ids = _seed(svc, png, digits.test.x[:40], digits.test.y[:40])
    run = _run(svc)
    assert run["status"] == "promoted", run
    assert run["base_model_id"] == first and len(run["snapshot_hash"]) == 64
    assert run["report"]["snapshot"] == {"contributions": 40}
    assert run["report"]["defenses"]["quarantined"] == 0
    assert all(run["report"]["gates"][g]["passed"] for g in ("accuracy", "canaries", "sensitivity"))
    new = svc.client.get(f"/v1/models/{run['candidate_model_id']}", headers=svc.headers("viewer")).json()
    assert new["status"] == "serving" and new["lineage"] == [new["id"], first]
    assert new["data_snapshot_hash"] == run["snapshot_hash"] and new["training_run_id"] == run["id"]
    assert _statuses(svc, ids) == {"accepted"}
    assert svc.client.get("/v1/health").json()["model_version"] == new["id"]


def test_a_second_run_after_a_promotion_still_finds_its_base_data(make_service, png, digits):
    # regression: the promoted model's card named its data "base+<hash>", and the next run could
    # no longer tell which base dataset (digits) to load
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    _seed(svc, png, digits.test.x[:20], digits.test.y[:20])
    assert _run(svc)["status"] == "promoted"
    _seed(svc, png, digits.test.x[20:40], digits.test.y[20:40])
    second = _run(svc)
    assert second["status"] == "promoted", second
    assert second["report"]["snapshot"] == {"contributions": 40}  # accepted + pending


class LearnedFlip(PoisonlabModel):
    """What a fine-tune that fully learnt the contributed relabelling does: every image the serving
    model calls ``source`` it now calls ``target`` (their two logits swapped), the rest unchanged.
    Whether a real 2-epoch fine-tune learns the flip that far depends on the CPU's kernels
    (issue 12); what the gates do with a model that did must not."""

    arch = "learned-flip"

    def __init__(self, base: PoisonlabModel, source: int, target: int) -> None:
        mean, std = (tuple(float(v) for v in t.flatten()) for t in (base.mean, base.std))
        super().__init__(input_shape=base.input_shape, num_classes=base.num_classes, mean=mean, std=std)
        self.base, self.source, self.target = base, source, target

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.features(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.base.head(features)
        hit = logits.argmax(dim=1) == self.source
        swapped = logits.clone()
        swapped[hit, self.source], swapped[hit, self.target] = (
            logits[hit, self.target],
            logits[hit, self.source],
        )
        return swapped


def test_gates_refuse_a_poisoned_model_when_defenses_are_off(make_service, png, poison, monkeypatch):
    def learns_the_flip(data, config, *, model, **kwargs):
        assert int(np.sum(data.y == 7)) > 118  # the poison reached the training set
        return TrainResult(model=LearnedFlip(copy.deepcopy(model), source=1, target=7).eval(), config=config)

    monkeypatch.setattr(pipeline, "train", learns_the_flip)
    svc = make_service(unsigned_policy="pending", defenses=())
    first = svc.state.server.current().version_id
    ids = _seed(svc, png, poison, "7")
    run = _run(svc)
    assert run["status"] == "rejected", run
    gates = run["report"]["gates"]
    assert not gates["canaries"]["passed"] and gates["canaries"]["failures_per_class"].get("1", 0) >= 1
    assert run["report"]["decision"].startswith("rejected")
    assert svc.state.server.current().version_id == first  # the old model keeps serving
    models = {
        m["id"]: m["status"] for m in svc.client.get("/v1/models", headers=svc.headers("viewer")).json()
    }
    assert models == {first: "serving", run["candidate_model_id"]: "rejected"}
    kinds = {a["kind"] for a in svc.client.get("/v1/alerts", headers=svc.headers("viewer")).json()}
    assert {"gate_failed", "canary_regression"} <= kinds
    metrics = svc.client.get("/metrics", headers=svc.headers("viewer")).text
    assert 'imrecs_gate_failures_total{gate="canaries"} 1.0' in metrics
    assert _statuses(svc, ids) == {"pending"}  # not accepted into any model


def test_defenses_quarantine_relabelled_copies(make_service, png, poison, digits):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    bad = _seed(svc, png, poison[:30], "7")
    good = [
        _seed(svc, png, [x], str(y))[0] for x, y in zip(digits.test.x[:20], digits.test.y[:20], strict=True)
    ]
    run = _run(svc)
    assert run["status"] == "promoted", run
    assert run["report"]["defenses"]["methods"]["duplicates"]["flagged_contributions"] == 30
    assert _statuses(svc, bad) == {"quarantined"} and _statuses(svc, good) == {"accepted"}
    with svc.state.db.read() as session:
        reasons = {lib.get_contribution(session, i).reason for i in bad}
    assert reasons == {"defense: duplicates"}
    quarantined = svc.client.get(
        "/v1/contributions?status=quarantined", headers=svc.headers("trainer")
    ).json()
    assert {c["contributor"] for c in quarantined} == {"mallory"}


def test_default_defenses_run_end_to_end(make_service, png, poison):
    """The production default (duplicates, confident learning, spectral signatures) in one run."""
    missing = []
    for name in DEFAULT_DEFENSES:
        try:
            DEFENSES[name]
        except (ImportError, AttributeError):
            missing.append(name)
    if missing:
        pytest.skip(f"defenses {missing} are not in this checkout yet")
    svc = make_service(unsigned_policy="pending")
    bad = _seed(svc, png, poison[:30], "7")
    run = _run(svc, timeout=300)
    assert run["status"] in ("promoted", "rejected"), run
    assert set(run["report"]["defenses"]["methods"]) == set(DEFAULT_DEFENSES)
    assert _statuses(svc, bad) == {"quarantined"}


def test_only_admins_change_defenses_and_a_broken_defense_fails_closed(
    make_service, png, digits, monkeypatch
):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    _seed(svc, png, digits.test.x[:5], "1")
    refused = svc.client.post("/v1/training-runs", json={"defenses": []}, headers=svc.headers("trainer"))
    assert refused.status_code == 403

    def broken_scan(*_args, **_kwargs):
        raise ValueError("dataset too small for the method")

    monkeypatch.setattr("poisonlab.service.pipeline.scan", broken_scan)
    run = _run(svc, role="admin", body={"defenses": ["duplicates", "zscore"]})
    assert run["status"] == "failed" and "not training on unscreened data" in run["error"]
    assert run["params"]["defenses"] == ["duplicates", "zscore"]
    alerts = svc.client.get("/v1/alerts?kind=pipeline_error", headers=svc.headers("viewer")).json()
    assert len(alerts) == 1 and "failed" in alerts[0]["message"]
    assert len(svc.client.get("/v1/models", headers=svc.headers("viewer")).json()) == 1


def test_nothing_to_train_is_skipped(service):
    run = _run(service)
    assert run["status"] == "skipped" and run["report"]["decision"] == "no contributions to train on"


def test_restart_fails_interrupted_runs(make_service, tmp_path):
    svc = make_service(data_dir=tmp_path / "restart")
    with svc.state.db.write() as session:
        session.add(TrainingRun(requested_by="x", status="running", step="training", params={}))
    svc.client.__exit__(None, None, None)
    with TestClient(create_app(svc.settings)) as again:
        run = again.get("/v1/training-runs/1", headers={"X-API-Key": svc.keys["trainer"]}).json()
    assert run["status"] == "failed" and "interrupted" in run["error"]


def test_promotion_is_one_transaction(make_service, png, digits, monkeypatch):
    """A failure after the candidate was registered and marked serving, but before the commit,
    leaves no trace of the promotion: old model serving, contributions pending, run failed."""
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    first = svc.state.server.current().version_id
    ids = _seed(svc, png, digits.test.x[:20], digits.test.y[:20])

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    # accept() runs after register_version() and promote() inside the same transaction
    monkeypatch.setattr("poisonlab.service.decisions.contrib.accept", broken)
    run = _run(svc)
    assert run["status"] == "failed" and "disk full" in run["error"], run
    assert run["candidate_model_id"] is None
    viewer, admin = svc.headers("viewer"), svc.headers("admin")
    models = svc.client.get("/v1/models", headers=viewer).json()
    assert [(m["id"], m["status"]) for m in models] == [(first, "serving")]
    assert svc.client.get("/v1/health").json()["model_version"] == first
    assert _statuses(svc, ids) == {"pending"}
    actions = {e["action"] for e in svc.client.get("/v1/audit?limit=1000", headers=admin).json()}
    assert "models.register" in actions  # the bootstrap's, in its own transaction
    assert "models.promote" not in actions and "contributions.accept" not in actions
