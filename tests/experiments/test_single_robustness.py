"""The optional ``robustness`` and ``mitigation`` blocks of a single run (issue 14, item 3):
config errors, the shipped configs, end-to-end runs on digits and on tiny colour data (1-2
epochs, seconds) and the chapter page reading their results. No figure of a trained model is
asserted; the checks' mechanics on constructed models are in test_single_robustness_checks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from poisonlab.data.dataset import Splits
from poisonlab.experiments import parse_experiment, run_experiment, write_experiment
from poisonlab.experiments.common.specs import read_config_mapping
from poisonlab.experiments.single.build import check_experiment
from poisonlab.experiments.single.mitigation import trusted_share
from poisonlab.experiments.single.report import metric_rows
from poisonlab.reporting.chapter_doc import chapter_markdown

REPO = Path(__file__).resolve().parents[2]
BACKDOOR = {"kind": "backdoor", "trigger": "pattern", "source": "7", "target": "1"}


def _digits(**overrides) -> dict:
    base = {
        "name": "digits-robust",
        "dataset": {"name": "digits"},
        "training": {"settings": {"epochs": 1}},
        "finetune": {"settings": {"epochs": 1}},
        "attack": BACKDOOR,
        "integration": "finetune",
    }
    return base | overrides


# ------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"robustness": {"canaries": {"per_class": 0}}}, "per_class"),
        (
            {"robustness": {"sensitivity": {"triggers": ["no_such_trigger"]}}},
            "unknown trigger 'no_such_trigger'",
        ),
        ({"robustness": {"sensitivity": {"triggers": [{"name": "pattern", "params": {"dist": 2}}]}}}, "dist"),
        ({"robustness": {"sensitivity": {"triggers": ["pattern", "pattern"]}}}, "distinct"),
        ({"robustness": {"sensitivity": {"spike_threshold": 1.5}}}, "spike_threshold"),
        ({"robustness": {"canary": {"per_class": 5}}}, "canary"),
        ({"robustness": {"canaries": {"per_class": 5, "colour": 1}}}, "colour"),
        ({"robustness": {}}, "robustness needs canaries"),
        ({"robustness": {"external_triggers": True}}, "metrics.external_images"),
        ({"mitigation": {"kind": "adversarial_training", "trusted_size": 10, "fraction": 1.5}}, "fraction"),
        ({"mitigation": {"kind": "adversarial_training", "trusted_size": 0}}, "trusted_size"),
        ({"mitigation": {"kind": "pruning", "trusted_size": 10}}, "kind"),
        ({"mitigation": {"kind": "adversarial_training", "trusted_size": 10, "epoch": 2}}, "epoch"),
        (
            {
                "robustness": {"canaries": {"split": "val"}},
                "mitigation": {"kind": "adversarial_training", "trusted_size": 10},
            },
            "use split: test",
        ),
    ],
)
def test_bad_blocks_fail_with_one_line(block: dict, message: str) -> None:
    with pytest.raises(ValueError, match="invalid experiment config") as err:
        parse_experiment(_digits(**block), origin="c.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text


def test_blocks_too_large_for_the_data_fail_before_training(digits_splits: Splits) -> None:
    big = parse_experiment(_digits(mitigation={"kind": "adversarial_training", "trusted_size": 271}))
    with pytest.raises(ValueError, match=r"trusted_size=271 is larger than the validation split \(270"):
        check_experiment(big, digits_splits)
    none = parse_experiment(
        _digits(mitigation={"kind": "adversarial_training", "trusted_size": 3, "fraction": 0.1})
    )
    with pytest.raises(ValueError, match="rounds to 0 triggered copies"):
        check_experiment(none, digits_splits)
    many = parse_experiment(_digits(robustness={"canaries": {"per_class": 500}}))
    with pytest.raises(ValueError, match="per_class=500, but the test split has only"):
        check_experiment(many, digits_splits)


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (
            {"kind": "label_flip", "source": "3", "target": "8", "count": 100_000},
            "cannot poison 100000 samples",
        ),
        (
            {"kind": "backdoor", "trigger": "pattern", "trigger_params": {"distance": 1000}, "source": "7"}
            | {"target": "1"},
            "distance",
        ),
    ],
)
def test_an_attack_the_data_cannot_take_fails_before_training(digits_splits: Splits, attack, message) -> None:
    # the attack builds, but poisoning the training split fails: found by the check, not after the baseline
    with pytest.raises(ValueError, match=message):
        check_experiment(parse_experiment(_digits(attack=attack)), digits_splits)
    check_experiment(parse_experiment(_digits()), digits_splits)  # a good one passes, data untouched


def test_absent_blocks_leave_the_config_dump_as_before() -> None:
    plain = parse_experiment(_digits())
    assert "robustness" not in plain.model_dump() and "mitigation" not in json.loads(plain.model_dump_json())
    full = parse_experiment(_digits(robustness={"canaries": {}}))
    assert full.model_dump()["robustness"]["canaries"] == {"per_class": 5, "split": "test"}


def _load_any(path: Path) -> object:
    """A chapter config with the loader of its kind: a single run (``attack``), a clean-label
    benchmark (``setting``) or the trigger figures (``canvas``)."""
    from poisonlab.experiments import load_experiment
    from poisonlab.experiments.clean_label import load_clean_label
    from poisonlab.experiments.figures.config import load_figures

    data = read_config_mapping(path)
    if "attack" in data:
        return load_experiment(path)
    return load_clean_label(path) if "setting" in data else load_figures(path)


def test_every_chapter_config_parses() -> None:
    configs = sorted((REPO / "experiments" / "chapter").glob("*.yaml"))
    loaded = {p.stem: _load_any(p) for p in configs}
    assert len(loaded) >= 14
    pattern = loaded["robustness-pattern"]
    assert pattern.robustness.external_triggers and pattern.robustness.sensitivity.triggers is None
    assert pattern.attack.model_dump() == loaded["art-pattern"].attack.model_dump()
    rutan = loaded["robustness-rutan"]
    assert rutan.robustness.canaries.per_class == 5 and rutan.attack == loaded["rutan-finetune"].attack
    adv = loaded["adversarial-training-pattern"]
    assert adv.mitigation.kind == "adversarial_training" and adv.mitigation.trusted_size <= 10_000
    for name in ("robustness-pattern", "robustness-rutan", "adversarial-training-pattern"):
        assert loaded[name].dataset == loaded["art-pattern"].dataset, name


# --------------------------------------------------------------------------------- end to end
def test_digits_run_with_every_block(tmp_path: Path, digits_splits: Splits) -> None:
    cfg = parse_experiment(
        _digits(
            seeds=[0, 1],
            baseline="per_seed",
            robustness={
                "canaries": {"per_class": 2},
                "sensitivity": {"triggers": ["pattern"], "images": 150, "reference": "clean"},
            },
            mitigation={"kind": "adversarial_training", "trusted_size": 60, "fraction": 0.5, "epochs": 1},
        )
    )
    result = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False, splits=digits_splits)
    write_experiment(result, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    setup = data["robustness"]["setup"]
    assert len(setup["canaries"]["indices"]) == 20 and setup["sensitivity"]["images"] == 150
    assert data["robustness"]["clean"]["canaries"]["n_failures"] == 0
    for run in data["runs"]:
        assert set(run["robustness"]) == {"canaries", "sensitivity"}
        assert "clean_robustness" in run  # per_seed: each seed's own clean model is checked too
        mit = run["mitigation"]
        trusted, _ = trusted_share(digits_splits.val, 60, run["seed"])
        assert mit["trusted_hash"] == trusted.content_hash and mit["trusted_size"] == 60
        assert mit["augmented_size"] > 60 and mit["triggers"] == ["attack:pattern"]
        assert mit["training"]["epochs"] == 1 and mit["training"]["seed"] == run["seed"]
        for model in ("mitigated", "control"):
            assert (
                0.0 <= mit[model]["attack_success_rate"] <= 1.0 and "sensitivity" in mit[model]["robustness"]
            )
    summary = data["summary"]
    assert set(summary["mitigation"]) >= {"poisoned", "mitigated", "control", "mitigated_minus_control"}
    assert len(summary["mitigation"]["mitigated"]["attack_success_rate"]["values"]) == 2
    assert summary["robustness"]["poisoned"]["canary_accuracy"]["binomial"]["n"] == 20
    md = (tmp_path / "run" / "report.md").read_text()
    for heading in ("## Robustness tests", "### Canary records", "### Trigger sensitivity", "## Mitigation"):
        assert heading in md, heading
    labels = [row[0] for row in metric_rows(result)]
    assert "canaries misclassified" in labels and "attack success rate, after mitigation" in labels


def _photos(folder: Path) -> list[str]:
    folder.mkdir()
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        path = folder / f"photo-{i}.png"
        Image.new("RGB", (20, 16), colour).save(path)
        paths.append(str(path))
    return paths


def test_external_photos_get_every_trigger(tmp_path: Path, make_colour_dataset) -> None:
    splits = Splits(
        train=make_colour_dataset(per_class=20, seed=0, name="colours-train"),
        val=make_colour_dataset(per_class=6, seed=1, name="colours-val"),
        test=make_colour_dataset(per_class=10, seed=2, name="colours-test"),
    )
    cfg = parse_experiment(
        {
            "name": "colours-photos",
            "training": {"settings": {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": None}},
            "attack": {
                "kind": "backdoor",
                "trigger": "cyan_square_replace",
                "trigger_params": {"size": 2},
                "source": "red",
                "target": "green",
            },
            "metrics": {"external_images": _photos(tmp_path / "photos")},
            "robustness": {
                "sensitivity": {"triggers": ["pattern", "single_pixel"]},
                "external_triggers": True,
            },
        }
    )
    result = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False, splits=splits)
    write_experiment(result, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["robustness"]["setup"]["external_triggers"] == [
        "attack:cyan_square_replace",
        "pattern",
        "single_pixel",
    ]
    for checks in (data["robustness"]["clean"], data["runs"][0]["robustness"]):
        rows = checks["external_triggers"]
        got = {(r["image"], r["trigger"]) for r in rows}
        triggers = ["none", "attack:cyan_square_replace", "pattern", "single_pixel"]
        assert got == {(f"photo-{i}.png", t) for i in range(2) for t in triggers}
        assert all(r["prediction"] in ("red", "green", "blue") and 0 <= r["probability"] <= 1 for r in rows)
    assert "### External photos with every trigger" in (tmp_path / "run" / "report.md").read_text()


def test_chapter_doc_reads_results_carrying_the_new_blocks(tmp_path: Path, digits_splits: Splits) -> None:
    cfg = parse_experiment(
        _digits(
            robustness={"sensitivity": {"triggers": ["pattern"], "images": 100}},
            mitigation={"kind": "adversarial_training", "trusted_size": 40, "epochs": 1},
        )
    )
    result = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False, splits=digits_splits)
    write_experiment(result, tmp_path / "run")
    extra = json.loads((tmp_path / "run" / "results.json").read_text())
    chapter = REPO / "docs" / "results" / "chapter"
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(chapter.glob("*/results.json"))}
    base = runs["art-pattern"]
    carrying = base | {"robustness": extra["robustness"]}
    carrying["summary"] = base["summary"] | {k: extra["summary"][k] for k in ("robustness", "mitigation")}
    carrying["runs"] = [
        r | {k: extra["runs"][0][k] for k in ("robustness", "mitigation")} for r in base["runs"]
    ]
    before = chapter_markdown(runs)
    after = chapter_markdown(runs | {"art-pattern": carrying})
    # the five tables are untouched; the blocks add their own sections after them, from the digits run
    # (the committed robustness-rutan run has its own robustness section already: compare up to it)
    head = "## Robustness tests"
    assert after.split(head)[0] == before.split(head)[0]
    added = after[len(after.split(head)[0]) :]
    assert "## Adversarial training" in added and "| art-pattern | trigger test" in added
