"""docs/results/detection.md is the generator's output, and the generator counts what it should.

The committed page must equal :func:`detection_markdown` of the committed records; the figures
are checked on a few constructed cells (counts, Wilson intervals, targets met or missed), and a
missing or malformed record fails with an error that names the file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from poisonlab.reporting.detection_data import (
    TARGETS,
    SplitCounts,
    complete_seeds,
    control_result,
    load_cells,
    load_sources,
    target_results,
    took,
)
from poisonlab.reporting.detection_doc import COMMAND, detection_markdown, targets_table
from poisonlab.reporting.prose import rate_cell
from poisonlab.reporting.stats import rate_interval

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
COST = ROOT / "benchmarks" / "results" / "screen_cost_cifar10.json"
SPLITS = SplitCounts(
    train=(100,) * 10, trusted=(10,) * 10, class_names=tuple("0123456789"), image_shape=(8, 8, 1)
)


def test_detection_page_is_the_generator_output() -> None:
    page = (RESULTS / "detection.md").read_text(encoding="utf-8")
    assert page == detection_markdown(load_sources(RESULTS, COST)), (
        f"docs/results/detection.md differs from its raw records: run {COMMAND}"
    )


def test_the_page_links_the_design_note_that_exists() -> None:
    page = (RESULTS / "detection.md").read_text(encoding="utf-8")
    assert "](../detection-defaults.md)" in page
    assert (ROOT / "docs" / "detection-defaults.md").is_file()


# ---------------------------------------------------------------- constructed records
def cell(seed, family, target, rate, *, asr, tp=0, poison=0, flagged=0, clean=100, auroc=0.99):
    """A cell record with the fields the page reads."""
    recall = tp / poison if poison else None
    screen = {"true_positives": tp, "poison": poison, "flagged": flagged, "clean": clean}
    screen |= {"recall": recall, "fpr": (flagged - tp) / clean, "auroc": auroc, "tpr_at_1fpr": recall}
    screen["params"] = {"methods": ["spectre", "anchored_knn"], "min_votes": 2}
    anchored = dict(screen, params={"k": 5, "threshold": 3.0})
    return {
        "cell": f"s{seed}-{family}-{target}-{rate}",
        "seed": seed,
        "family": family,
        "target": target,
        "rate": rate,
        "model": {"attack_success": asr},
        "detectors": {"anchored_knn": anchored, "spectre": {"auroc": 0.5}},
        "screen": screen,
        "seconds": 10.0,
        "commit": "abcdef0123",
    }


def small_grid() -> list[dict]:
    return [
        cell(1000, "patch", "all_to_one", 0.05, asr=0.99, tp=45, poison=50, flagged=47),
        cell(1000, "patch", "all_to_one", 0.1, asr=1.0, tp=100, poison=100, flagged=101),
        cell(1000, "patch", "all_to_one", 0.01, asr=0.2, tp=1, poison=10, flagged=2),  # did not take
        cell(1000, "label_flip", "one_to_one", 0.1, asr=0.0, tp=10, poison=10, flagged=10),
        cell(1000, "sig", "all_to_one", 0.1, asr=0.0, tp=0, poison=10, flagged=1),
        cell(1000, "control", "none", None, asr=None, flagged=2, clean=200),
        cell(1001, "control", "none", None, asr=None, flagged=1, clean=200),
    ]


def test_targets_count_cells_that_took_and_pool_with_wilson() -> None:
    results = {r.target.label: r for r in target_results(small_grid())}
    trojan = results[TARGETS[0].label]
    assert (len(trojan.cells), len(trojan.took)) == (3, 2)
    assert trojan.pooled == rate_interval(146, 160)  # every poison counts, the cell that did not take too
    assert trojan.recalls == [0.9, 1.0] and not trojan.met
    assert [c["rate"] for c in trojan.misses] == [0.05]
    flips = results[TARGETS[3].label]
    assert flips.met and flips.pooled.successes == flips.pooled.n == 10
    assert not results[TARGETS[1].label].cells and not results[TARGETS[1].label].met


def test_controls_pool_false_positives_over_clean_samples() -> None:
    control = control_result(small_grid())
    assert control.fprs == [0.01, 0.005] and control.met
    assert control.pooled == rate_interval(3, 400)


def test_targets_table_shows_counts_and_intervals() -> None:
    table = targets_table(small_grid())
    pooled = rate_interval(146, 160)
    assert f"146/160 = 0.91 [{pooled.low:.2f}, {pooled.high:.2f}]" in table
    assert "| 3 (2) | 0.90 / 0.95 |" in table
    assert "max 0.0100, mean 0.0075" in table


def test_took_and_complete_seeds() -> None:
    assert took({"family": "label_flip", "model": {"attack_success": 0.0}})
    assert not took({"family": "patch", "model": {"attack_success": 0.49}})
    planned = ["s1000-a", "s1000-b", "s1001-a", "s1001-b"]
    assert complete_seeds([{"cell": "s1000-a"}, {"cell": "s1000-b"}, {"cell": "s1001-a"}], planned) == [1000]
    with pytest.raises(ValueError, match="s<seed>"):
        complete_seeds([], ["control"])


# ---------------------------------------------------------------- the whole page on constructed files
def write_sources(root: Path) -> tuple[Path, Path]:
    """A tiny docs/results tree and cost file with every record the page reads."""
    det = root / "detection"
    grid = small_grid()
    planned = [c["cell"] for c in grid] + ["s1002-control"]
    heldout = {"name": "h", "seeds": [1000, 1001, 1002], "planned": planned, "config": {"dataset": {}}}
    heldout |= {
        "sessions": [{"config_file": "h.yaml", "threads": 1}],
        "grid": {"attacks": {"patch": {"size": [2, 5]}}},
    }
    dev = [c | {"seed": 0, "cell": "s0-" + c["cell"]} for c in grid]
    backdoor = {"kind": "backdoor", "source": "7", "target": "1"}
    matrix_run = {"command": ["run.py", "/snap/m.yaml"], "cwd": "/snap", "commit": None}
    matrix_run["config"] = {"attacks": [{"name": "pattern", "attack": backdoor}], "trusted_size": 20}
    matrix_run["config"]["mitigation"] = {"defenses": "screen"}
    row = {"name": "pattern", "poison_count": 100, "train_size": 1100}
    row |= {"poisoned": {"attack_success": 1.0, "clean_accuracy": 0.95}}
    row["detection"] = {"screen": {"recall": 0.8, "flagged": 90}}
    row["mitigation"] = {
        "screen": {"attack_success": 1.0, "clean_accuracy": 0.98, "poison_left": 20},
        "oracle": {"attack_success": 0.0, "clean_accuracy": 0.99},
    }
    files = {
        det / "digits-heldout" / "cells.jsonl": "\n".join(json.dumps(c) for c in grid) + "\n",
        det / "digits-heldout" / "run.json": json.dumps(heldout),
        det / "digits-dev-seed0" / "cells.jsonl": "\n".join(json.dumps(c) for c in dev),
        det / "digits-dev-seed0" / "run.json": json.dumps({"name": "d", "sessions": []}),
        det / "matrix-digits-screen" / "matrix.json": json.dumps(
            {"rows": [row], "clean_model": {"clean_accuracy": 0.99}}
        ),
        det / "matrix-digits-screen" / "run.json": json.dumps(matrix_run),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    cost = root / "cost.json"
    detectors = {"flare": 50.0, "anchored_knn": 20.0}
    cost.write_text(
        json.dumps(
            {
                "seconds_total": 200.0,
                "forward_seconds_penultimate": 100.0,
                "rss_peak_mib": 3000.0,
                "detector_seconds": detectors,
            }
        )
    )
    return root, cost


def test_the_page_from_constructed_records(tmp_path: Path) -> None:
    page = " ".join(detection_markdown(load_sources(*write_sources(tmp_path), splits=SPLITS)).split())
    assert "Seeds 1000, 1001 finished whole (7 cells). **Each cell" in page and "left out of" not in page
    assert "`abcdef0`" in page and "k = 5, threshold 3.0" in page
    assert "| patch all-to-one 5 %, seed 1000 | 0.99 | 45/50 = 0.90 | 0.990 | 0.0200 |" in page
    assert "0.0100 on seed 1000 (2 of 200 clean samples)" in page
    assert f"Pooled: {rate_cell(rate_interval(3, 400), 4)}; the interval includes the target 0.01" in page
    assert f"| pattern | 100 | 1.000 | {rate_cell(rate_interval(80, 100))} |" in page  # 80 of 100 flagged
    assert "10/1,000 = 0.010" in page  # the screen's false positives among the matrix's clean samples
    assert "**over** the 2 GiB target" in page and "2 x 100 + 30 = 230 s) is met: 200 s" in page
    assert "| rest of the scan (the vote, bookkeeping) | 30 |" in page
    only = " ".join(
        detection_markdown(load_sources(*write_sources(tmp_path), splits=SPLITS), seeds=[1001]).split()
    )
    assert "Seeds 1001 finished whole (1 cells); the 6 cells of seed(s) 1000 are left out" in only


# ---------------------------------------------------------------- missing and malformed files
def test_missing_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cells file not found"):
        load_cells(tmp_path / "cells.jsonl")
    root, cost = write_sources(tmp_path)
    (root / "detection" / "matrix-digits-screen" / "matrix.json").unlink()
    with pytest.raises(FileNotFoundError, match="matrix.json"):
        load_sources(root, cost, splits=SPLITS)
    root, cost = write_sources(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_sources(root, root / "nope.json", splits=SPLITS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\n{not json", "line 2: not JSON"),
        ("[1, 2]", "line 1: a cell record must be a JSON object"),
        ('{"cell": "a", "seed": 1}', "lacks family, target, rate, model, detectors, screen"),
        ("\n\n", "no cell records"),
    ],
)
def test_malformed_cells_raise_value_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cells.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_cells(path)


def test_malformed_run_files_and_seeds_raise_value_error(tmp_path: Path) -> None:
    root, cost = write_sources(tmp_path)
    with pytest.raises(ValueError, match="no held-out cell of seeds"):
        detection_markdown(load_sources(root, cost, splits=SPLITS), seeds=[7])
    cost.write_text('{"seconds_total": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="cost.json: lacks forward_seconds_penultimate"):
        load_sources(root, cost, splits=SPLITS)
    (root / "detection" / "digits-heldout" / "run.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="run.json: expected a JSON object"):
        load_sources(root, cost, splits=SPLITS)


def test_the_command_writes_the_page_and_fails_cleanly(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "detection_doc_cmd", ROOT / "benchmarks" / "detection_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (
        module.main([str(tmp_path), "--cost", str(tmp_path / "none.json"), "--out", str(tmp_path / "d.md")])
        == 2
    )
    assert "error:" in capsys.readouterr().err and not (tmp_path / "d.md").exists()
