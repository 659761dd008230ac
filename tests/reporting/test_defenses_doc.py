"""docs/results/defenses.md is the generator's output, and the generator counts what it should.

The committed page must equal :func:`defenses_markdown` of the committed records; the figures are
checked on small constructed matrices (counts rebuilt from rates, Wilson and Newcombe intervals,
the oracle's pick, the mitigation mode), and a missing or malformed record fails with an error
that names the file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from poisonlab.reporting.defenses_data import (
    ADDED_IN,
    DatasetCounts,
    Matrix,
    load_matrix,
    load_sources,
)
from poisonlab.reporting.defenses_doc import COMMAND, defenses_markdown
from poisonlab.reporting.defenses_text import _oracle_pick, best_defenses, compare
from poisonlab.reporting.prose import diff_points, rate_cell
from poisonlab.reporting.stats import rate_difference, rate_interval

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
DEV_CASE = ROOT / "benchmarks" / "results" / "defenses.json"
CONFIGS = ROOT / "experiments" / "defenses"
COUNTS = DatasetCounts(("a", "b", "c"), test=(20, 20, 20), train=(40, 30, 30))


def test_defenses_page_is_the_generator_output() -> None:
    page = (RESULTS / "defenses.md").read_text(encoding="utf-8")
    assert page == defenses_markdown(load_sources(RESULTS, DEV_CASE, CONFIGS)), (
        f"docs/results/defenses.md differs from its raw records: run {COMMAND}"
    )


def test_the_page_links_the_design_note_that_exists() -> None:
    page = (RESULTS / "defenses.md").read_text(encoding="utf-8")
    assert "](../defenses-notes.md)" in page
    assert (ROOT / "docs" / "defenses-notes.md").is_file()


def test_the_commits_named_for_files_without_provenance_are_those_that_added_them() -> None:
    for folder in ("cifar10", "digits"):
        path = RESULTS / "defenses" / folder / "matrix.json"
        name = json.loads(path.read_text(encoding="utf-8"))["name"]
        try:
            out = subprocess.run(
                ["git", "log", "--diff-filter=A", "--format=%h", "--abbrev=7", "--", str(path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("no git history here")
        if not out:
            pytest.skip("the history that added the file is not in this clone")
        assert ADDED_IN[name] == out[-1]


# ---------------------------------------------------------------- constructed records
DEFENSES = ["duplicates", "label_drift", "kmeans", "strip", "activation_clustering"]
DEFENSES += ["spectral_signatures", "confident_learning", "provenance"]


def cell(f1=0.0, auroc=0.5, recall=0.0, flagged=0, precision=None) -> dict:
    return {"f1": f1, "auroc": auroc, "recall": recall, "flagged": flagged, "precision": precision}


def row(name, description, poison, train_size, asr, clean_asr, acc, **detection) -> dict:
    cells = {d: cell() for d in DEFENSES} | detection
    return {
        "name": name,
        "description": description,
        "poison_count": poison,
        "train_size": train_size,
        "poisoned": {"clean_accuracy": acc, "attack_success": asr},
        "clean_model_success": clean_asr,
        "detection": cells,
        "mitigation": {},
    }


def after(asr, acc, removed, left, model_id="m-other") -> dict:
    return {
        "attack_success": asr,
        "clean_accuracy": acc,
        "removed": removed,
        "poison_left": left,
        "model_id": model_id,
    }


def small_matrix(name: str) -> dict:
    """Four rows over a 100-image share; rates are whole counts of 20 source and 60 test images."""
    rows = [
        row(
            "mislabel",
            "mislabel: 4 external:x -> b, appended",
            4,
            104,
            0.1,
            0.05,
            0.5,
            provenance=cell(auroc=1.0),
            confident_learning=cell(f1=0.1, auroc=0.6, recall=0.25, flagged=16, precision=1 / 16),
        ),
        row(
            "flip",
            "label_flip: 10 a->b, in place",
            10,
            100,
            0.6,
            0.05,
            0.45,
            label_drift=cell(f1=0.6, auroc=0.9, recall=0.6, flagged=10, precision=0.6),
        ),
        row(
            "pattern",
            "backdoor[pattern]: 10 a->b, concat",
            10,
            110,
            0.9,
            0.05,
            0.5,
            label_drift=cell(f1=0.8, auroc=0.99, recall=0.8, flagged=10, precision=0.8),
            duplicates=cell(f1=0.6, auroc=0.9, recall=0.9, flagged=18, precision=0.5),
            provenance=cell(f1=1.0, auroc=1.0, recall=1.0, flagged=10, precision=1.0),
        ),
        row(
            "cyan",
            "backdoor[cyan_square_replace]: 10 a->b, concat",
            10,
            110,
            1.0,
            0.1,
            0.55,
            label_drift=cell(f1=0.9, auroc=1.0, recall=0.9, flagged=10, precision=0.9),
            duplicates=cell(f1=0.6, auroc=0.9, recall=1.0, flagged=20, precision=0.5),
            spectral_signatures=cell(f1=1.0, auroc=1.0, recall=1.0, flagged=10, precision=1.0),
            provenance=cell(f1=1.0, auroc=1.0, recall=1.0, flagged=10, precision=1.0),
        ),
    ]
    clean = {"model_id": "m-clean", "clean_accuracy": 0.6, "attack_success": None}
    return {
        "name": name,
        "dataset": "toy",
        "defenses": DEFENSES,
        "clean_model": clean,
        "seconds": 120.0,
        "rows": rows,
    }


def best_matrix() -> dict:
    m = small_matrix("toy-best")
    picks = [
        {"confident_learning": after(0.05, 0.45, 20, 1)},
        {"label_drift": after(0.0, 0.1, 10, 4)},
        {"provenance": after(0.05, 0.6, 10, 0, "m-clean")},
        {"spectral_signatures": after(0.1, 0.6, 10, 0, "m-clean")},
    ]
    for r, p in zip(m["rows"], picks, strict=True):
        r["mitigation"] = p
    return m


def all_matrix() -> dict:
    m = small_matrix("toy-all")
    for r in m["rows"]:
        r["mitigation"] = {
            d: after(r["poisoned"]["attack_success"], 0.5, 0, r["poison_count"]) for d in DEFENSES
        }
        r["mitigation"]["oracle"] = after(0.05, 0.6, r["poison_count"], 0, "m-clean")
    return m


DEV = {
    "case": "toy",
    "results": [
        {
            "worker": "ours",
            "samples": 110,
            "poison": 10,
            "rows": [
                {"method": "poisonlab ActivationClustering", "auroc": 0.95, "flagged": 0, "recall": 0.0},
                {"method": "poisonlab SpectralSignatures", "auroc": 0.97, "flagged": 9, "recall": 0.9},
            ],
        }
    ],
}


def write_sources(root: Path, best: dict | None = None, digits: dict | None = None) -> Path:
    """A tiny docs/results tree, dev case and configs folder under ``root``."""
    files = {
        root / "defenses" / "cifar10" / "matrix.json": json.dumps(best or best_matrix()),
        root / "defenses" / "digits" / "matrix.json": json.dumps(digits or all_matrix()),
        root / "dev.json": json.dumps(DEV),
        root / "configs" / "matrix-cifar10.yaml": "mitigation: {defenses: screen, oracle: false}\n",
        root / "configs" / "matrix-digits.yaml": "mitigation: {defenses: all, oracle: true}\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def load(root: Path):
    return load_sources(
        root, root / "dev.json", root / "configs", counts={"cifar10": COUNTS, "digits": COUNTS}
    )


def test_the_page_from_constructed_records(tmp_path: Path) -> None:
    page = " ".join(defenses_markdown(load(write_sources(tmp_path))).split())
    n = rate_interval
    assert "**One matrix is not what its command reruns today.**" in page  # digits: all, as today
    today = "today's `experiments/defenses/matrix-cifar10.yaml` has `mitigation: screen`"
    assert f"with `mitigation: best`; {today}" in page
    assert f"recall from {rate_cell(n(8, 10))} (pattern) to {rate_cell(n(9, 10))} (cyan)" in page
    assert f"(F1 0.60, recall {rate_cell(n(6, 10))})" in page  # the flip through the drift test
    assert (
        f"the mislabel row's 0.100 against the clean model's 0.050 is {compare(n(2, 20), n(1, 20))}" in page
    )
    assert "Provenance's F1 1.00 is by construction** (on both CIFAR-10 backdoor rows" in page
    assert "on cyan, spectral signatures and provenance tie and spectral signatures was picked" in page
    assert "the share holds 10 poisons and 30 clean bs" in page  # the near tie, counted
    assert f"cyan 1.000 -> 0.100, {diff_points(rate_difference(2, 20, 20, 20))}, excludes 0" in page
    assert "both dropped exactly the poison, and both retrained into the clean model itself" in page
    assert f"clean accuracy of {rate_cell(n(6, 60), 3)}" in page and "failed to train" in page
    lowest = rate_cell(n(9, 10))
    assert (
        f"flag 0.90-1.00 of the poison of the 2 concatenated backdoors (recall; the lowest {lowest})" in page
    )
    assert "The recorded CIFAR-10 run took 2.0 minutes" in page
    assert f"flags {rate_cell(n(9, 10))} of the poison and {rate_cell(n(0, 100), 4)} of the clean" in page
    # the digits-like matrix: every cell mitigated with the oracle
    assert "## Embedded digits (every cell mitigated, with the oracle)" in page
    assert "- mislabel (from 0.100): none." in page and "- cyan (from 1.000): the oracle 0.050" in page
    assert f"the oracle 0.050 at clean accuracy 0.600, {diff_points(rate_difference(1, 20, 20, 20))}" in page
    assert '"a" -> "b" (flip, pattern and cyan)' in page and '"x" -> "b" (mislabel)' in page


def test_counts_must_be_whole(tmp_path: Path) -> None:
    bad = best_matrix()
    bad["rows"][2]["poisoned"]["attack_success"] = 0.333  # not a count of 20 test images
    with pytest.raises(ValueError, match="row 'pattern': attack success 0.333 is not a whole count of 20"):
        defenses_markdown(load(write_sources(tmp_path, best=bad)))
    bad = best_matrix()
    bad["rows"][1]["train_size"] = 90  # an in-place row on another share
    with pytest.raises(ValueError, match="rows disagree on the clean training share"):
        defenses_markdown(load(write_sources(tmp_path, best=bad)))


def test_mitigation_mode_and_the_oracle_pick(tmp_path: Path) -> None:
    root = write_sources(tmp_path)
    best = load_matrix(root / "defenses" / "cifar10" / "matrix.json", COUNTS)
    every = load_matrix(root / "defenses" / "digits" / "matrix.json", COUNTS)
    assert (best.mitigation_mode(), best.oracle()) == ("best", False)
    assert (every.mitigation_mode(), every.oracle()) == ("all", True)
    assert best.base() == 100 and best.commit() is None
    recorded = copy.deepcopy(best.data) | {"provenance": {"commit": "0123456789abcdef", "parameters": {}}}
    recorded["provenance"]["parameters"]["config"] = {"mitigation": {"defenses": "screen"}}
    prov = Matrix(best.path, recorded, COUNTS)
    assert prov.commit() == "0123456" and prov.mitigation_mode() == "screen"
    assert best_defenses(best.rows[3], best.defenses) == ["spectral_signatures", "provenance"]
    assert best_defenses(best.rows[0], best.defenses) == ["confident_learning"]
    assert best_defenses(row("r", "x", 1, 1, 0.0, 0.0, 0.0), DEFENSES) == []  # every F1 is 0
    # beside runs over seeds (which mitigate with the screen) the caveat names the earlier run
    assert "The CIFAR-10 mitigation column is oracle-picked" in " ".join(_oracle_pick(best)[0].split())
    assert "earlier single run's CIFAR-10 mitigation column" in " ".join(_oracle_pick(best, True)[0].split())


# ---------------------------------------------------------------- missing and malformed files
def test_missing_files_name_the_path(tmp_path: Path) -> None:
    root = write_sources(tmp_path)
    (root / "defenses" / "digits" / "matrix.json").unlink()
    with pytest.raises(FileNotFoundError, match="digits/matrix.json"):
        load(root)
    root = write_sources(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_sources(root, root / "nope.json", root / "configs", counts={"cifar10": COUNTS, "digits": COUNTS})
    (root / "configs" / "matrix-digits.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="matrix-digits.yaml"):
        load(root)


def test_malformed_cells_dev_case_and_config_raise_value_error(tmp_path: Path) -> None:
    bad = best_matrix()
    del bad["rows"][0]["detection"]["strip"]["auroc"]
    root = write_sources(tmp_path, best=bad)
    with pytest.raises(ValueError, match="row 'mislabel': strip lacks one of f1, auroc"):
        load(root)
    root = write_sources(tmp_path)
    (root / "dev.json").write_text('{"case": "x", "results": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="development case lacks the poisonlab rows"):
        defenses_markdown(load(root))
    (root / "configs" / "matrix-cifar10.yaml").write_text("name: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="matrix-cifar10.yaml: lacks mitigation"):
        load(root)


def _command():
    spec = importlib.util.spec_from_file_location("defenses_doc_cmd", ROOT / "benchmarks" / "defenses_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_fails_cleanly_on_missing_and_bad_files(tmp_path: Path, capsys) -> None:
    out = tmp_path / "d.md"
    assert _command().main([str(tmp_path), "--dev-case", str(tmp_path / "none.json"), "--out", str(out)]) == 2
    assert "error: result file not found" in capsys.readouterr().err and not out.exists()
    root = write_sources(tmp_path)
    (root / "defenses" / "cifar10" / "matrix.json").write_text("{broken", encoding="utf-8")
    assert _command().main([str(root), "--dev-case", str(root / "dev.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not JSON" in err and not out.exists()


def test_the_command_writes_the_committed_page(tmp_path: Path) -> None:
    out = tmp_path / "defenses.md"
    args = [str(RESULTS), "--dev-case", str(DEV_CASE), "--configs", str(CONFIGS), "--out", str(out)]
    assert _command().main(args) == 0
    assert out.read_text(encoding="utf-8") == (RESULTS / "defenses.md").read_text(encoding="utf-8")
