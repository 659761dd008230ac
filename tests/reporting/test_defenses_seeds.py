"""The seeded sections of defenses.md: reading ``seed-K/matrix.json``, the finds / misses rule
counted over seeds, the paired intervals of every effect, and the comparison with an earlier run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from poisonlab.reporting.defenses_seeds import attack_table, load_seeded, seeded_section
from poisonlab.reporting.stats import describe_difference, paired_difference

DEFENSES = ["label_drift", "spectral_signatures", "provenance", "screen"]


def _cell(f1: float, auroc: float = 0.9) -> dict:
    return {"f1": f1, "auroc": auroc, "recall": f1, "precision": f1, "flagged": 10, "fpr": 0.0}


def _matrix(seed: int, drift: float, spectral: float, asr: float, after: float) -> dict:
    """One seed's matrix.json: a pattern backdoor, 10 poisons, the screen's retrain."""
    row = {
        "name": "pattern",
        "description": "backdoor[pattern]: 10 a->b, concat",
        "poison_count": 10,
        "train_size": 110,
        "poisoned": {"clean_accuracy": 0.8 + seed / 100, "attack_success": asr},
        "clean_model_success": 0.05,
        "detection": {
            "label_drift": _cell(drift),
            "spectral_signatures": _cell(spectral),
            "provenance": _cell(1.0, 1.0),
            "screen": _cell(drift),
        },
        "mitigation": {
            "screen": {
                "attack_success": after,
                "clean_accuracy": 0.8,
                "removed": 12,
                "poison_left": 1,
                "model_id": "m",
            }
        },
    }
    return {
        "name": "m",
        "description": "",
        "dataset": "digits",
        "defenses": DEFENSES,
        "clean_model": {"clean_accuracy": 0.9},
        "seconds": 60.0,
        "rows": [row],
        "provenance": {"commit": "abcdef0123456789", "seeds": [seed]},
    }


SEEDS = [  # drift finds on every seed, spectral on two of three; the screen's retrain lowers success
    _matrix(0, 0.9, 0.6, 0.95, 0.10),
    _matrix(1, 0.8, 0.2, 0.90, 0.20),
    _matrix(2, 0.7, 0.7, 1.00, 0.05),
]


def _write(root: Path, runs: list[dict], names: list[str] | None = None) -> Path:
    for run, name in zip(runs, names or [f"seed-{i}" for i in range(len(runs))], strict=True):
        (root / name).mkdir(parents=True)
        (root / name / "matrix.json").write_text(json.dumps(run), encoding="utf-8")
    return root


def test_load_seeded_pools_the_seeds_in_order(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "digits-seeds", SEEDS))
    assert sm.seeds == [0, 1, 2]
    assert sm.defenses[-1] == "screen"
    stat = sm.agg["rows"][0]["poisoned"]["attack_success"]
    assert stat["mean"] == pytest.approx(0.95)
    assert sm.commits() == ["abcdef0123456"]


def test_load_seeded_refuses_missing_and_inconsistent_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no seed-K/matrix.json"):
        load_seeded(tmp_path)
    with pytest.raises(ValueError, match="its folder says seed 1"):
        load_seeded(_write(tmp_path / "a", [SEEDS[0], SEEDS[0]]))
    with pytest.raises(ValueError, match=r"0..N-1"):
        load_seeded(_write(tmp_path / "b", [SEEDS[0], SEEDS[2]], ["seed-0", "seed-2"]))
    broken = dict(SEEDS[0])
    del broken["provenance"]
    with pytest.raises(ValueError, match="lacks provenance"):
        load_seeded(_write(tmp_path / "c", [broken]))


def test_finds_means_every_seed_and_some_seeds_are_counted(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "s", SEEDS))
    text = "\n".join(seeded_section(sm, "Digits", "poisonlab matrix x --seeds 3"))
    item = " ".join(text.split("**pattern**:")[1].split("\n- ")[0].split())
    assert "found on every seed by the drift test" in item
    assert "spectral signatures (2 of 3, F1 0.20-0.70)" in item
    assert "provenance" not in item  # by construction, not a finding
    assert "The screen's verdict reaches F1 0.50 on all 3 seeds" in item


def test_found_by_leaves_out_empty_clauses() -> None:
    from poisonlab.reporting.defenses_seeds import _found_by

    assert _found_by([], [], 2) == "found by no detector on any seed."
    assert _found_by(["STRIP"], [], 3) == "found on every seed by STRIP; by no other detector on any seed."
    assert _found_by([], ["SCAn (1 of 2)"], 2) == (
        "found by no detector on every seed; on some seeds only by SCAn (1 of 2)."
    )
    assert _found_by(["STRIP"], ["SCAn (1 of 3)"], 3).endswith("on some seeds only by SCAn (1 of 3).")
    assert _found_by([], [], 1) == "found by no detector."


def test_every_effect_is_a_paired_interval_over_seeds(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "s", SEEDS))
    text = " ".join("\n".join(seeded_section(sm, "Digits", "cmd")).split())
    before = [m["rows"][0]["poisoned"]["attack_success"] for m in SEEDS]
    after = [m["rows"][0]["mitigation"]["screen"]["attack_success"] for m in SEEDS]
    diff = paired_difference(after, before)
    assert diff.low < -1.0  # the t interval leaves the range a difference of rates can take ...
    expected = describe_difference(replace(diff, low=-1.0))  # ... and the page cuts it there
    assert f"pattern: success {expected}" in text
    assert "-100.0 to" in expected
    rise = paired_difference(before, [0.05] * 3)
    rise = describe_difference(replace(rise, high=min(rise.high, 1.0)))
    assert f"above 0 for pattern {rise}" in text


def test_the_attack_table_holds_means_with_their_t_interval(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "s", SEEDS))
    table = attack_table(sm)
    stat = sm.agg["rows"][0]["mitigation"]["screen"]["attack_success"]
    assert f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]" in table
    assert "success after screen" in table.splitlines()[0]


def test_earlier_cells_outside_the_seeds_range_are_counted(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "s", SEEDS))
    earlier = _matrix(0, 0.1, 0.5, 0.9, 0.9)  # drift and the screen (0.10) lie outside 0.70-0.90
    text = " ".join(
        "\n".join(seeded_section(sm, "Digits", "cmd", earlier=earlier, earlier_commit="a68c299")).split()
    )
    assert "2 of its 4 F1 cells lie outside the range of the 3 seeds" in text
    assert "the drift test on pattern (0.10 against 0.70-0.90)" in text


def test_the_page_puts_the_runs_over_seeds_first_and_relabels_the_single_runs(tmp_path: Path) -> None:
    import shutil

    from poisonlab.reporting.defenses_data import load_sources
    from poisonlab.reporting.defenses_doc import defenses_markdown

    root = Path(__file__).resolve().parents[2]
    for name in ("cifar10", "digits"):  # the committed single runs, beside constructed seeds
        (tmp_path / "defenses" / name).mkdir(parents=True)
        shutil.copy(root / "docs/results/defenses" / name / "matrix.json", tmp_path / "defenses" / name)
    _write(tmp_path / "defenses" / "digits-seeds", SEEDS)
    page = defenses_markdown(
        load_sources(tmp_path, root / "benchmarks/results/defenses.json", root / "experiments/defenses")
    )
    assert page.index("## Embedded digits over 3 seeds") < page.index("## The earlier single runs")
    assert page.index("## The earlier single runs") < page.index("## CIFAR-10 (scaled to a 2-core CPU)")
    assert "**Runs over seeds** (digits 3 seeds" in page
    assert "--seeds 3` at commit `abcdef0123456`" in " ".join(page.split())
    assert "**The earlier single runs are not what the commands rerun today**" in page


def test_one_seed_reads_as_a_single_run(tmp_path: Path) -> None:
    sm = load_seeded(_write(tmp_path / "s", SEEDS[:1]))
    text = " ".join("\n".join(seeded_section(sm, "CIFAR-10", "cmd --seeds 1")).split())
    assert "## CIFAR-10, one seed at today's config" in text
    assert "It took 1 minutes" in text and "(one run, no interval)" in text
    assert "**One seed**: every figure is a single run" in text
    assert "pattern +90.0 points (one seed, no interval)" in text
    assert "on some seeds" not in text and "interval +" not in text
