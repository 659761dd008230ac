"""The red-team campaign's mechanics: its world, its accounting, one scenario end to end.

No figure of a trained model is asserted: the scenario tests replace the fine-tune by an
unchanged copy of the serving model and the screen by a scan that flags what the test says.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from poisonlab.cli.redteam_cmd import parse_seeds
from poisonlab.redteam import campaign
from poisonlab.redteam.campaign import CampaignConfig, fate, reason_kind, run_scenario
from poisonlab.redteam.summary import markdown, summarise
from poisonlab.redteam.world import POOL_FRACTION, make_world
from poisonlab.service import pipeline
from poisonlab.training import TrainResult


def test_seeds_parse_as_ranges_and_lists():
    assert parse_seeds("1000-1002") == (1000, 1001, 1002)
    assert parse_seeds("1, 3-4,3") == (1, 3, 4)
    for bad in ("", "a-b", "1-", "-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    with pytest.raises(ValueError, match=r"seed range 5-1 runs backwards; write it low-high \(1-5\)"):
        parse_seeds("5-1")


def test_a_world_keeps_the_outsiders_pool_out_of_the_base_data(digits):
    w, again = make_world(1000), make_world(1000)
    counts = np.bincount(digits.train.y, minlength=10)
    assert np.array_equal(np.bincount(w.pool.y, minlength=10), (POOL_FRACTION * counts).astype(int))
    assert len(w.splits.train) + len(w.pool) == len(digits.train)
    split = sorted(x.tobytes() for x in np.concatenate([w.splits.train.x, w.pool.x]))
    assert split == sorted(x.tobytes() for x in digits.train.x)  # a partition of the train split
    assert np.array_equal(w.splits.val.x, digits.val.x) and np.array_equal(w.splits.test.x, digits.test.x)
    assert (w.target, w.source, w.patch.description) == (again.target, again.source, again.patch.description)
    assert w.target != w.source
    x = w.pool.x[:5]
    stamped = w.patch.apply(x)
    changed = (stamped != x).any(axis=(0, 3))
    assert 0 < changed.sum() <= 9 and np.array_equal(w.blend.apply(x), again.blend.apply(x))
    drawn = w.draw(30, exclude=w.target)
    assert (drawn.y != w.target).all() and len(w.draw(len(w.pool) - 30)) == len(w.pool) - 30
    with pytest.raises(ValueError, match="unused"):
        w.draw(1)
    w.reset()
    assert len(w.draw(5, classes=np.array([w.source]))) == 5


def test_each_contribution_is_traced_to_the_layer_that_stopped_it():
    assert reason_kind("unsigned") == "door" and reason_kind("review: volume cap: x") == "caps"
    assert reason_kind("screen: anchored_knn") == "screen" and reason_kind("defense: duplicates") == "screen"
    assert (
        reason_kind("source: key:m has 3 of 5") == "distrust"
        and reason_kind("rejected run 2: ...") == "gates"
    )
    assert fate({"status": "accepted", "reason": "trained into x (run 1)"}) == "accepted"
    assert fate({"status": "pending", "reason": "unsigned (policy: pending)"}) == "pending"


def _record(attack, runs, *, poison_final=None, clean_final=None, asr=(0.0, 0.0), seed=1000):
    return {
        "seed": seed, "attack": attack, "poison_sent": sum((poison_final or {}).values()),
        "clean_sent": sum((clean_final or {}).values()), "at_submission": {}, "runs": runs,
        "poison_final": poison_final or {}, "clean_final": clean_final or {},
        "clean_quarantined_by": {"screen": (clean_final or {}).get("quarantined", 0)},
        "asr_base": asr[0], "asr_final": asr[1], "seconds": 1.0,
    }  # fmt: skip


def _run(status, poisoned=False, screened=True):
    return {"status": status, "poisoned_promotion": poisoned, "screened": screened}


def test_the_summary_counts_what_the_issue_asks():
    records = [
        _record(
            "clean", [_run("promoted")], clean_final={"accepted": 79, "quarantined": 1}, asr=(None, None)
        ),
        _record("clean", [_run("promoted")], clean_final={"accepted": 80}, asr=(None, None), seed=1001),
        _record("patch", [_run("skipped")], poison_final={"screen": 35}),
        _record(
            "drip", [_run("promoted", True), _run("skipped")], poison_final={"screen": 30, "accepted": 3}
        ),
        _record("retry", [_run("promoted", True, screened=False), _run("skipped")], asr=(0.0, 0.8)),
    ]
    s = summarise(records)
    assert s["seeds"] == [1000, 1001] and s["scenarios"] == 5
    assert s["poisoned_promotions"] == 1  # the drip's; the retry's first run had the screen off
    assert s["gates_only"] | {"effective": None, "asr_gains_of_promotions": None} == {
        "runs": 1, "rejected": 0, "promoted": 1, "poisoned_promotions": 1,
        "effective": None, "asr_gains_of_promotions": None,
    }  # fmt: skip
    assert s["clean_control"] | {"by_reason": None} == {
        "sent": 160, "quarantined": 1, "rate": 0.0063, "by_reason": None, "run_outcomes": {"promoted": 2},
    }  # fmt: skip
    assert s["effective_poisoned_promotions"] == 0 and s["gates_only"]["effective"] == 1
    assert s["per_attack"]["retry"]["max_asr_gain"] == 0.8
    assert s["per_attack"]["drip"]["poison_stopped_by"] == {"screen": 30, "accepted": 3}
    text = markdown(s)
    assert "poisoned models promoted: 1**" in text and "1 of 160 (0.63%)" in text


@pytest.fixture
def fast_service(monkeypatch):
    """Fine-tunes that change nothing (a new version id, the same predictions), a short search."""

    def unchanged(data, config, *, model, **kwargs):
        new = copy.deepcopy(model).eval()
        with torch.no_grad():
            next(new.parameters()).flatten()[0] += 1e-6
        return TrainResult(model=new, config=config)

    monkeypatch.setattr(pipeline, "train", unchanged)
    monkeypatch.setattr(campaign, "SETTINGS", {a: {"reverse_engineer_steps": 2} for a in campaign.ATTACKS})


def _flag_everything(monkeypatch):
    class Flags:
        def __init__(self, name, flagged):
            self.name, self.flagged, self.seconds = name, flagged, 0.0

    class Result:
        def __init__(self, union, methods):
            self.dataset = union
            methods = [m if isinstance(m, str) else m[0] for m in methods]  # (name, params) pairs
            offset = np.char.startswith(np.asarray(union.source, dtype=str), "contribution:")
            self.methods = [Flags(m, offset.copy()) for m in methods]
            self.screen = type(
                "S", (), {"flagged": offset, "methods": tuple(methods), "to_dict": lambda s: {}}
            )()

        def method(self, name):
            return next(m for m in self.methods if m.name == name)

    monkeypatch.setattr(
        "poisonlab.service.screening.scan", lambda union, methods, **kw: Result(union, methods)
    )


def test_unsigned_poison_stops_at_the_door(tmp_path, digits_model_dir, fast_service):
    world = make_world(1000)
    cfg = CampaignConfig(seeds=(1000,), work_dir=tmp_path, poison=4)
    rec = run_scenario(world, "unsigned", digits_model_dir, cfg, tmp_path / "unsigned")
    assert rec["at_submission"] == {"quarantined": 4} and rec["poison_final"] == {"door": 4}
    assert [r["status"] for r in rec["runs"]] == ["skipped"] and not rec["runs"][0]["poisoned_promotion"]


def test_a_retry_is_accounted_apart_from_the_screened_runs(
    tmp_path, digits_model_dir, fast_service, monkeypatch
):
    """Run 1 (screen off) promotes what it was given: a poisoned promotion of the gates alone. Run 2
    screens everything again, quarantines it and rolls the serving model back."""
    _flag_everything(monkeypatch)
    world = make_world(1000)
    cfg = CampaignConfig(seeds=(1000,), work_dir=tmp_path, poison=4, clean_per_run=4)
    rec = run_scenario(world, "retry", digits_model_dir, cfg, tmp_path / "retry")
    first, second = rec["runs"]
    assert first["status"] == "promoted" and first["poisoned_promotion"] and not first["screened"]
    assert first["poison"] == {"accepted": 4} and set(first["evidence"]) >= {"accuracy", "nc_gap"}
    assert second["status"] == "skipped" and second["screened"] and not second["poisoned_promotion"]
    assert rec["poison_final"] == {"screen": 4} and rec["clean_final"] == {"quarantined": 4}
    s = summarise([rec])
    assert s["poisoned_promotions"] == 0 and s["gates_only"]["poisoned_promotions"] == 1


def test_the_campaign_summary_records_its_provenance() -> None:
    from poisonlab.cli.redteam_cmd import _campaign_provenance

    cfg = CampaignConfig(seeds=(3, 4), work_dir=Path("/nonexistent"), poison=7)
    record = _campaign_provenance(cfg)
    assert record["seeds"] == [3, 4] and record["versions"]["torch"]
    assert record["parameters"]["campaign"]["poison"] == 7
    assert "work_dir" not in record["parameters"]["campaign"]
    # every service default the campaign ran with, the anchored detector's cap included
    assert record["parameters"]["service_defaults"]["screen_max_fpr"] == 0.005
    json.dumps(record, allow_nan=False)
