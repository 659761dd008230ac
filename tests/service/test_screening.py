"""The pipeline's caps and screen: what it quarantines, on which evidence, and what it reports.

The fine-tune is an unchanged copy of the serving model and, except in the first test, the screen
is a scan whose flags the test chooses (``fake_scan``): these tests check what the pipeline does
with a verdict, not what one checkpoint scores. Helpers come from test_pipeline.py.
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from test_pipeline import ALICE, FAST, _reasons, _run, _seed, _statuses

from poisonlab.service import contributions as lib
from poisonlab.service import pipeline
from poisonlab.service.decisions import admin_released
from poisonlab.service.screening import distrusted, trusted_set, volume_caps
from poisonlab.training import TrainResult


@pytest.fixture
def poison(digits):
    return digits.train.x[digits.train.y == 1]  # about 118 images, contributed as "7"


@pytest.fixture
def trained_on(monkeypatch):
    """The fine-tune replaced by an unchanged copy of the serving model (a new version id, the
    same predictions); returns the training sets it was given."""
    seen = []

    def unchanged(data, config, *, model, **kwargs):
        seen.append(data)
        new = copy.deepcopy(model).eval()
        with torch.no_grad():
            next(new.parameters()).flatten()[0] += 1e-6 * len(seen)
        return TrainResult(model=new, config=config)

    monkeypatch.setattr(pipeline, "train", unchanged)
    return seen


class FakeMethod:
    def __init__(self, name, flagged):
        self.name, self.flagged, self.seconds = name, flagged, 0.01
        self.scores = flagged.astype(float)


class FakeScreen:
    def __init__(self, flagged, methods):
        self.flagged, self.methods = flagged, tuple(methods)

    def to_dict(self):
        return {"methods": list(self.methods), "flagged": int(self.flagged.sum())}


class FakeResult:
    """What :func:`poisonlab.defenses.scan.scan` returns, with flags chosen by the test."""

    def __init__(self, dataset, methods, screen):
        self.dataset, self.methods, self.screen = dataset, methods, screen

    def method(self, name):
        return next(m for m in self.methods if m.name == name)


@pytest.fixture
def fake_scan(monkeypatch):
    """``fake_scan(contributions=set of ids, base=set of base indices)``: the screen flags exactly
    those (as ``anchored_knn``); each call's arguments are kept in the returned list."""
    calls = []

    def install(contributions=(), base=()):
        def scan(union, methods, *, model, trusted, device, screen):
            calls.append({"union": union, "methods": list(methods), "trusted": trusted, "screen": screen})
            src = np.asarray(union.source, dtype=object)
            flags = np.array([s in {f"contribution:{i}" for i in contributions} for s in src])
            flags[list(base)] = True
            names = [m if isinstance(m, str) else m[0] for m in methods]  # (name, params) pairs
            found = [FakeMethod(n, flags if n == "anchored_knn" else np.zeros_like(flags)) for n in names]
            return FakeResult(union, found, FakeScreen(flags, names) if screen else None)

        monkeypatch.setattr("poisonlab.service.screening.scan", scan)
        return calls

    return install


def test_the_default_screen_runs_over_base_data_and_every_contribution(make_service, png, poison, trained_on):
    """The real screen (every detector, the held-out trusted set) with the default settings:
    relabelled copies of base images are quarantined (the duplicates check alone guarantees it)."""
    svc = make_service(unsigned_policy="pending", **FAST)
    bad = _seed(svc, png, poison[:30], "7")
    run = _run(svc, timeout=600)
    assert run["status"] == "skipped", run  # nothing left to train on: no new version
    report = run["report"]["defenses"]
    assert set(report["methods"]) >= {"anchored_knn", "spectre", "spectral_signatures", "duplicates"}
    assert report["screen"]["methods"][-1] == "anchored_knn"
    assert report["base"]["flagged"] == sum(report["base"]["per_class"].values())
    assert _statuses(svc, bad) == {"quarantined"} and trained_on == []


def test_the_trusted_set_is_held_out_base_data_never_a_contribution(digits):
    trusted = trusted_set(digits)
    assert len(trusted) == len(digits.val) + len(digits.test)  # digits: under the per-class cap
    assert set(np.asarray(trusted.source, dtype=object)) <= {"digits:val", "digits:test"}


def test_the_screen_quarantines_by_evidence_and_reports_flagged_base_data(
    make_service, png, digits, trained_on, fake_scan
):
    svc = make_service(unsigned_policy="pending", source_flag_min=5, **FAST)  # no distrust here
    bootstrap = svc.state.server.current().version_id
    fake_scan()  # run 1: nothing flagged, everything accepted
    first = _seed(svc, png, digits.test.x[:6], digits.test.y[:6], actor=ALICE)
    assert _run(svc)["status"] == "promoted"
    released = _seed(svc, png, digits.test.x[6:8], digits.test.y[6:8], actor=ALICE)
    for cid in released:  # an admin's decision: accepted without a promotion
        r = svc.client.post(f"/v1/contributions/{cid}/release", headers=svc.headers("admin"))
        assert r.status_code == 200, r.text
    fresh = _seed(svc, png, digits.test.x[8:30], digits.test.y[8:30], actor=ALICE)
    ones = np.flatnonzero(digits.train.y == 1)
    flags = {"contributions": {first[0], released[0], fresh[0]}, "base": set(ones[:20].tolist()) | {0}}
    calls = fake_scan(**flags)
    run = _run(svc)
    # every contribution was screened again, with the base data, against held-out trusted data
    assert len(calls[-1]["union"]) == len(digits.train) + 30 and calls[-1]["screen"]
    assert len(calls[-1]["trusted"]) == len(digits.val) + len(digits.test)
    # the anchored detector runs with the service's false-positive cap (settings.screen_max_fpr)
    assert ("anchored_knn", {"max_fpr": svc.state.settings.screen_max_fpr}) in calls[-1]["methods"]
    # the serving model had learnt a contribution now flagged: back to the version without it
    assert run["status"] == "skipped" and run["report"]["decision"].startswith(f"rolled back to {bootstrap}")
    assert svc.state.server.current().version_id == bootstrap
    report = run["report"]["defenses"]
    assert report["flagged_accepted"] == 1 and report["flagged_admin_released"] == 1
    assert report["rolled_back_to"] == bootstrap
    with svc.state.db.read() as session:
        rows = {i: lib.get_contribution(session, i) for i in (first[0], released[0], fresh[0])}
    assert rows[first[0]].status == "quarantined" and rows[first[0]].reason == "screen: anchored_knn"
    assert rows[fresh[0]].status == "quarantined" and admin_released(rows[released[0]])
    # flagged base data is reported, audited and alerted on (a block of "1"s), never dropped
    assert report["base"]["flagged"] == 21 and report["base"]["per_class"]["1"] == 20
    alerts = {a["kind"]: a for a in svc.client.get("/v1/alerts", headers=svc.headers("viewer")).json()}
    assert alerts["flagged_accepted"]["severity"] == "critical"
    assert alerts["flagged_accepted"]["details"]["rolled_back_to"] == bootstrap
    assert alerts["base_flagged"]["details"]["per_class"]["1"] == 20
    audit = svc.client.get("/v1/audit?limit=1000", headers=svc.headers("admin")).json()
    assert {"pipeline.base_flagged", "models.rollback"} <= {e["action"] for e in audit}
    # the next run trains from there: the admin's release stands but stays out, the base data all in
    fake_scan(**flags)
    assert _run(svc)["status"] == "promoted"
    assert len(trained_on[-1]) == len(digits.train) + 5 + 1 + 21


def test_a_source_caught_poisoning_loses_its_unflagged_contributions(
    make_service, png, digits, trained_on, fake_scan
):
    svc = make_service(unsigned_policy="pending", **FAST)
    bad = _seed(svc, png, digits.test.x[:5], digits.test.y[:5])  # mallory: 3 of 5 flagged
    good = _seed(svc, png, digits.test.x[5:25], digits.test.y[5:25], actor=ALICE)  # alice: 1 of 20
    fake_scan(contributions={*bad[:3], good[0]})
    run = _run(svc)
    assert run["status"] == "promoted", run
    assert _statuses(svc, bad) == {"quarantined"}
    assert all(r.startswith("source: key:mallory has 3 of 5") for r in (_reasons(svc, bad[3:]).values()))
    assert _statuses(svc, good[1:]) == {"accepted"} and _statuses(svc, good[:1]) == {"quarantined"}
    assert run["report"]["defenses"]["distrusted_sources"] == {
        "key:mallory": {"evidence": 3, "contributions": 5}
    }
    # the evidence is remembered: a later batch from the same source goes the same way
    again = _seed(svc, png, digits.test.x[25:28], digits.test.y[25:28])
    fake_scan()
    assert _run(svc)["status"] == "skipped" and _statuses(svc, again) == {"quarantined"}


def test_distrust_needs_both_a_count_and_a_share():
    snap = pipeline.Snapshot(
        data=None, ids=np.arange(1, 41), pending=np.ones(40, bool), admin=np.zeros(40, bool),
        who=np.array(["a"] * 30 + ["b"] * 10, dtype=object), hash="x",
    )  # fmt: skip
    flagged = np.zeros(40, bool)
    flagged[[0, 1, 30, 31]] = True  # a: 2 of 30, b: 2 of 10
    caught, sources = distrusted(snap, np.ones(40, bool), flagged, Counter(), 0.1, 3)
    assert caught == {} and sources == {}
    caught, sources = distrusted(snap, np.ones(40, bool), flagged, Counter({"b": 1}), 0.1, 3)
    assert set(caught) == set(range(31, 41)) and sources == {"b": {"evidence": 3, "contributions": 11}}
    caught, _ = distrusted(snap, np.ones(40, bool), flagged, Counter({"a": 1}), 0.2, 3)
    assert caught == {}  # a: 3 of 31 is under 20 %


def test_volume_caps_count_every_contribution_and_hold_only_pending_ones():
    base = [10, 4, 10]
    ids, labels = [1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 1, 0, 1, 1]
    pending = [False, True, True, True, True, True, True]
    who = ["s", "s", "s", "t", "s", "t", "u"]
    held = volume_caps(ids, labels, pending, who, base, source_fraction=0.5, class_fraction=1.0)
    # class 1 (4 base samples): 2 per source, 4 in all; the accepted one (id 1) counts and stays
    assert set(held) == {3, 7} and held[3].startswith("review: volume cap: s already contributes 2")
    assert "4 contributions of class 1" in held[7]


def test_volume_caps_hold_the_excess_for_review(make_service, png, digits, trained_on):
    svc = make_service(unsigned_policy="pending", screen=False, max_source_class_fraction=0.05, **FAST)
    ones = digits.test.x[digits.test.y == 1][:8]
    mine = _seed(svc, png, ones, "1")  # base data: 118 "1"s -> 5 per source
    hers = _seed(svc, png, ones[:2], "1", actor=ALICE)
    run = _run(svc)
    assert run["status"] == "promoted" and run["report"]["caps"] == {"held_for_review": 3}
    assert _statuses(svc, mine[:5]) == {"accepted"} and _statuses(svc, mine[5:]) == {"quarantined"}
    assert _statuses(svc, hers) == {"accepted"}
    assert all(r.startswith("review: volume cap: key:mallory") for r in _reasons(svc, mine[5:]).values())


def test_an_admin_may_run_without_screening(make_service, png, digits, trained_on, monkeypatch):
    svc = make_service(unsigned_policy="pending", **FAST)
    _seed(svc, png, digits.test.x[:5], digits.test.y[:5])

    def never(*_args, **_kwargs):
        raise AssertionError("the screen ran")

    monkeypatch.setattr("poisonlab.service.screening.scan", never)
    run = _run(svc, role="admin", body={"defenses": []})
    assert run["status"] == "promoted", run
    assert run["report"]["defenses"]["note"] == "no defenses configured"
