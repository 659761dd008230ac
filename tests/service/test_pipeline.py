"""The defended continuous-learning pipeline end to end on the digits model.

The attack is the chapter's relabelling: copies of training images of one class contributed with
another label (here every training "1" labelled "7"). Most tests replace the fine-tune by a copy of
the serving model (``trained_on``: a fine-tune that changed nothing passes every comparative gate)
or by a hand-wired result, so that they check what the pipeline does with a verdict, not what one
checkpoint happens to score. The caps and the screen are tested in test_screening.py.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from poisonlab.service import contributions as lib
from poisonlab.service import pipeline
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.db import TrainingRun
from poisonlab.training import TrainResult

MALLORY = Actor("mallory", "contributor")
ALICE = Actor("alice", "contributor")
FAST = {"reverse_engineer_steps": 3}  # the gate runs; its search is not what these tests check


def _seed(svc, png, images, labels, actor: Actor = MALLORY) -> list[int]:
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
                actor=actor,
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


def _reasons(svc, ids) -> dict[int, str]:
    with svc.state.db.read() as session:
        return {i: lib.get_contribution(session, i).reason for i in ids}


@pytest.fixture
def poison(digits):
    return digits.train.x[digits.train.y == 1]  # about 118 images, contributed as "7"


@pytest.fixture
def trained_on(monkeypatch):
    """The fine-tune replaced by an unchanged copy of the serving model; returns the list of the
    training sets it was given (to check what a run trained on)."""
    seen = []

    def unchanged(data, config, *, model, **kwargs):
        seen.append(data)
        new = copy.deepcopy(model).eval()
        with torch.no_grad():  # a new version id (a hash of the weights), the same predictions
            next(new.parameters()).flatten()[0] += 1e-6 * len(seen)
        return TrainResult(model=new, config=config)

    monkeypatch.setattr(pipeline, "train", unchanged)
    return seen


GATES = ("accuracy", "canaries", "neural_cleanse", "sensitivity", "behaviour")


def test_clean_contributions_are_trained_and_promoted(make_service, png, digits, trained_on):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False, **FAST)
    first = svc.state.server.current().version_id
    ids = _seed(svc, png, digits.test.x[:40], digits.test.y[:40])
    run = _run(svc)
    assert run["status"] == "promoted", run
    assert run["base_model_id"] == first and len(run["snapshot_hash"]) == 64
    assert run["report"]["snapshot"] == {"contributions": 40}
    assert run["report"]["defenses"]["quarantined"] == 0
    assert tuple(run["report"]["gates"]) == GATES
    assert all(run["report"]["gates"][g]["passed"] for g in GATES)
    assert len(trained_on[0]) == len(digits.train) + 40
    new = svc.client.get(f"/v1/models/{run['candidate_model_id']}", headers=svc.headers("viewer")).json()
    assert new["status"] == "serving" and new["lineage"] == [new["id"], first]
    assert new["data_snapshot_hash"] == run["snapshot_hash"] and new["training_run_id"] == run["id"]
    assert _statuses(svc, ids) == {"accepted"}
    assert svc.client.get("/v1/status", headers=svc.headers("viewer")).json()["model_version"] == new["id"]


def test_a_second_run_after_a_promotion_still_finds_its_base_data(make_service, png, digits, trained_on):
    # regression: the promoted model's card named its data "base+<hash>", and the next run could
    # no longer tell which base dataset (digits) to load
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False, **FAST)
    _seed(svc, png, digits.test.x[:20], digits.test.y[:20])
    assert _run(svc)["status"] == "promoted"
    _seed(svc, png, digits.test.x[20:40], digits.test.y[20:40])
    second = _run(svc)
    assert second["status"] == "promoted", second
    assert second["report"]["snapshot"] == {"contributions": 40}  # accepted + pending
    assert len(trained_on[1]) == len(digits.train) + 40


def test_gates_refuse_a_poisoned_model_and_a_plain_retry_cannot_walk_past(
    make_service, png, poison, monkeypatch, learned_flip
):
    def learns_the_flip(data, config, *, model, **kwargs):
        assert int(np.sum(data.y == 7)) > 118  # the poison reached the training set
        return TrainResult(model=learned_flip(copy.deepcopy(model), source=1, target=7).eval(), config=config)

    monkeypatch.setattr(pipeline, "train", learns_the_flip)
    no_caps = {"max_source_class_fraction": 10, "max_class_contribution_fraction": 10}
    svc = make_service(unsigned_policy="pending", defenses=(), screen=False, **no_caps, **FAST)
    first = svc.state.server.current().version_id
    ids = _seed(svc, png, poison, "7")
    run = _run(svc)
    assert run["status"] == "rejected", run
    gates = run["report"]["gates"]
    assert not gates["canaries"]["passed"] and gates["canaries"]["failures_per_class"].get("1", 0) >= 1
    # the comparison with the serving model names the attack: class 1 moved to 7
    assert not gates["behaviour"]["passed"]
    assert ("1", "7") in {(s["source"], s["target"]) for s in gates["behaviour"]["shifts"]}
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
    # what the rejected candidate was trained on stays quarantined, with the reason
    assert _statuses(svc, ids) == {"quarantined"}
    assert run["report"]["quarantined_after_rejection"] == len(ids)
    reasons = set(_reasons(svc, ids).values())
    assert len(reasons) == 1 and reasons.pop().startswith(f"rejected run {run['id']}: candidate ")
    # the walk-past: a plain retry has nothing new to train on, and promotes nothing
    retry = _run(svc)
    assert retry["status"] == "skipped" and retry["report"]["decision"] == "no contributions to train on"
    assert retry["candidate_model_id"] is None
    assert len(svc.client.get("/v1/models", headers=svc.headers("viewer")).json()) == 2


def test_defenses_quarantine_relabelled_copies(make_service, png, poison, digits, trained_on):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False, **FAST)
    bad = _seed(svc, png, poison[:30], "7")
    good = _seed(svc, png, digits.test.x[:20], digits.test.y[:20], actor=ALICE)
    run = _run(svc)
    assert run["status"] == "promoted", run
    assert run["report"]["defenses"]["methods"]["duplicates"]["flagged_contributions"] == 30
    assert _statuses(svc, bad) == {"quarantined"} and _statuses(svc, good) == {"accepted"}
    assert set(_reasons(svc, bad).values()) == {"defense: duplicates"}
    quarantined = svc.client.get(
        "/v1/contributions?status=quarantined", headers=svc.headers("trainer")
    ).json()
    assert {c["contributor"] for c in quarantined} == {"mallory"}


def test_a_run_that_learns_nothing_new_promotes_nothing(make_service, png, poison, trained_on):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False, **FAST)
    _seed(svc, png, poison[:10], "7")  # relabelled copies: all quarantined
    run = _run(svc)
    assert run["status"] == "skipped" and run["candidate_model_id"] is None and trained_on == []
    assert len(svc.client.get("/v1/models", headers=svc.headers("viewer")).json()) == 1


def test_only_admins_change_defenses_and_a_broken_defense_fails_closed(
    make_service, png, digits, monkeypatch
):
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",))
    _seed(svc, png, digits.test.x[:5], "1")
    refused = svc.client.post("/v1/training-runs", json={"defenses": []}, headers=svc.headers("trainer"))
    assert refused.status_code == 403

    def broken_scan(*_args, **_kwargs):
        raise ValueError("dataset too small for the method")

    monkeypatch.setattr("poisonlab.service.screening.scan", broken_scan)
    run = _run(svc, role="admin", body={"defenses": ["duplicates", "zscore"]})
    assert run["status"] == "failed" and "not training on unscreened data" in run["error"]
    assert run["params"]["defenses"] == ["duplicates", "zscore"]
    alerts = svc.client.get("/v1/alerts?kind=pipeline_error", headers=svc.headers("viewer")).json()
    assert len(alerts) == 1 and "failed" in alerts[0]["message"]
    assert len(svc.client.get("/v1/models", headers=svc.headers("viewer")).json()) == 1
    assert _statuses(svc, [1, 2, 3, 4, 5]) == {"pending"}  # a failed run decides nothing


def test_nothing_to_train_is_skipped(service):
    run = _run(service)
    assert run["status"] == "skipped" and run["report"]["decision"] == "no contributions to train on"


def test_restart_requeues_an_interrupted_run_once_then_fails_it(make_service, tmp_path):
    """The process running a run died: the next start runs it again, once; a second death fails it."""
    svc = make_service(data_dir=tmp_path / "restart")
    with svc.state.db.write() as session:
        session.add(TrainingRun(requested_by="x", status="running", step="training", params={}))
        session.add(TrainingRun(requested_by="x", status="running", step="gates", params={}, attempts=2))
    svc.client.__exit__(None, None, None)
    trainer = {"X-API-Key": svc.keys["trainer"]}
    with TestClient(create_app(svc.settings)) as again:
        deadline = time.monotonic() + 60
        while (first := again.get("/v1/training-runs/1", headers=trainer).json())["status"] in (
            "queued",
            "running",
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = again.get("/v1/training-runs/2", headers=trainer).json()
    assert first["status"] == "skipped", first  # ran again: nothing to train on
    assert first["report"]["recovered"] == ["requeued once: the service stopped during step 'training'"]
    assert (
        second["status"] == "failed" and "interrupted" in second["error"] and "second time" in second["error"]
    )


def test_promotion_is_one_transaction(make_service, png, digits, monkeypatch, trained_on):
    """A failure after the candidate was registered and marked serving, but before the commit,
    leaves no trace of the promotion: old model serving, contributions pending, run failed."""
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False, **FAST)
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
    assert svc.client.get("/v1/status", headers=viewer).json()["model_version"] == first
    assert _statuses(svc, ids) == {"pending"}
    actions = {e["action"] for e in svc.client.get("/v1/audit?limit=1000", headers=admin).json()}
    assert "models.register" in actions  # the bootstrap's, in its own transaction
    assert "models.promote" not in actions and "contributions.accept" not in actions
