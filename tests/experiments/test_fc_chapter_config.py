"""The chapter's feature-collision settings as a clean-label config: it parses, and a 1-trial
digits-sized copy of it runs end to end."""

from __future__ import annotations

from pathlib import Path

from poisonlab.experiments.clean_label import load_clean_label, parse_clean_label, run_clean_label
from poisonlab.experiments.common.specs import read_config_mapping

CONFIG = Path(__file__).parents[2] / "experiments" / "chapter" / "feature-collision-chapter.yaml"
#: IBM ART FeatureCollisionAttack(..., max_iter=10, similarity_coeff=256, watermark=0.3) in the chapter
CHAPTER = {"steps": 10, "similarity_coeff": 256.0, "watermark": 0.3, "feature_layer": "penultimate"}


def test_the_config_parses_with_the_chapters_settings():
    cfg = load_clean_label(CONFIG)
    assert cfg.setting == "transfer_linear" and cfg.dataset.name == "cifar10"
    assert cfg.eps == 1.0  # ART has no L-inf budget: only the [0, 1] clip
    rows = {a.name: a for a in cfg.attacks}
    assert rows["FC-chapter"].attack == "feature_collision"
    assert rows["FC-chapter"].params.items() >= CHAPTER.items()
    assert rows["FC-200"].params == {**rows["FC-chapter"].params, "steps": 200}
    assert "watermark" in cfg.description and "learning_rate" in cfg.description


def test_a_one_trial_digits_copy_runs_end_to_end():
    data = read_config_mapping(CONFIG, "clean-label config")
    data.update(
        dataset={"name": "digits"},
        pretrain_size=500,
        train_size=300,
        eval_size=150,
        trusted_size=60,
        budget=0.03,
        trials=1,
        pretraining={"preset": "digits", "settings": {"epochs": 4}},
        attacks=[a for a in data["attacks"] if a["name"] == "FC-chapter"],
    )
    cfg = parse_clean_label(data, origin="fc-chapter-digits")
    run = run_clean_label(cfg, progress=False)
    (row,) = run.trials
    assert row["attack"] == "FC-chapter" and row["kind"] == "feature_collision"
    assert row["poisons"] == 9 and isinstance(row["success"], bool)
    assert row["craft"]["steps"] == 10
    assert row["craft"]["loss_final"] <= row["craft"]["loss_initial"] + 1e-6
