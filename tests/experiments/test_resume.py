"""``run --resume``: a stopped multi-seed run keeps its trained seeds, and only the same run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poisonlab.data.dataset import Splits
from poisonlab.experiments import parse_experiment, run_experiment, write_experiment

TINY = {"settings": {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": None}}
BACKDOOR = {
    "kind": "backdoor",
    "trigger": "cyan_square_replace",
    "trigger_params": {"size": 2},
    "source": "red",
    "target": "green",
}


@pytest.fixture
def splits(make_colour_dataset) -> Splits:
    return Splits(
        train=make_colour_dataset(per_class=12, seed=0, name="colours-train"),
        val=make_colour_dataset(per_class=4, seed=1, name="colours-val"),
        test=make_colour_dataset(per_class=8, seed=2, name="colours-test"),
    )


def _config(seeds: list[int], **overrides):
    fields = {
        "name": "resume",
        "training": TINY,
        "finetune": {"preset": "chapter-finetune", "settings": {"epochs": 1, "batch_size": 16}},
        "attack": BACKDOOR,
        "integration": "finetune",
        "baseline": "per_seed",
        "seeds": seeds,
    }
    return parse_experiment(fields | overrides)


def _stopped_after_seed_0(out: Path, splits: Splits, **overrides) -> Path:
    """What a 2-seed run killed during seed 1 leaves: seed 0's model, no results or run.json."""
    run_experiment(_config([0], **overrides), out, device="cpu", progress=False, splits=splits)
    assert not (out / "run.json").exists()
    return out / "models" / "seed-0"


def test_resume_reuses_the_finished_seed_and_trains_the_rest(tmp_path: Path, splits: Splits) -> None:
    out = tmp_path / "run"
    seed0 = _stopped_after_seed_0(out, splits)
    card, weights = json.loads((seed0 / "model.json").read_text()), seed0 / "weights.safetensors"
    stamp, trained_by = weights.stat().st_mtime_ns, json.loads((seed0 / "run.json").read_text())
    assert len(card["metrics"]["history"]) == 1  # the card keeps the curve for a resumed report
    cfg = _config([0, 1])
    with pytest.raises(FileExistsError, match="seed-0"):  # without --resume it is refused, as before
        run_experiment(cfg, out, device="cpu", progress=False, splits=splits)
    result = run_experiment(cfg, out, device="cpu", progress=False, splits=splits, resume=True)
    assert weights.stat().st_mtime_ns == stamp  # not trained again
    first, second = result.runs
    assert first.model_id == card["id"] and first.history == card["metrics"]["history"]
    assert first.resumed_from == {k: trained_by[k] for k in ("run_id", "created_at", "commit")}
    assert second.resumed_from is None and (out / "models" / "seed-1" / "model.json").is_file()
    write_experiment(result, out)
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs[0]["resumed_from"]["run_id"] == trained_by["run_id"]
    assert "resumed_from" not in runs[1]
    # the reused model is measured again: the same figures as a fresh evaluation of the same weights
    fresh = run_experiment(cfg, out, device="cpu", progress=False, splits=splits, resume=True, overwrite=True)
    assert fresh.runs[0].measurement.scalars() == first.measurement.scalars()


@pytest.mark.parametrize(
    ("changed", "match"),
    [
        (
            {"finetune": {"preset": "chapter-finetune", "settings": {"epochs": 2, "batch_size": 16}}},
            "training config",
        ),
        ({"attack": {**BACKDOOR, "trigger_params": {"size": 3}}}, r"training data \(content hash\)"),
        ({"integration": "retrain"}, "training config|parent model"),
    ],
    ids=["epochs", "trigger", "integration"],
)
def test_resume_refuses_a_model_of_another_run(tmp_path: Path, splits: Splits, changed, match) -> None:
    out = tmp_path / "run"
    _stopped_after_seed_0(out, splits)
    with pytest.raises(
        ValueError, match=f"cannot resume: .*seed-0 holds a model trained with another ({match})"
    ):
        run_experiment(
            _config([0, 1], **changed), out, device="cpu", progress=False, splits=splits, resume=True
        )
    assert not (out / "models" / "seed-1").exists()  # refused at seed 0, before seed 1 trained


def test_resume_refuses_tampered_weights(tmp_path: Path, splits: Splits) -> None:
    seed0 = _stopped_after_seed_0(tmp_path / "run", splits)
    weights = seed0 / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="do not match model.json"):
        run_experiment(
            _config([0, 1]), tmp_path / "run", device="cpu", progress=False, splits=splits, resume=True
        )
