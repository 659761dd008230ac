"""docs/results/clean_label.md is the generator's output, and the generator says what the runs show.

The committed page must equal :func:`clean_label_markdown` of the committed runs; the prose is
checked on two small constructed runs (successes with Wilson intervals, a Newcombe difference, a
collapsed victim, the paper's figure outside an interval, a silent defense), and a missing or
malformed ``results.json`` fails with an error that names the file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from poisonlab.experiments.clean_label.config import load_clean_label
from poisonlab.experiments.clean_label.records import pool_seeds
from poisonlab.reporting.clean_label_doc import auroc_cells, auroc_table, doc_tables
from poisonlab.reporting.clean_label_page import (
    COMMAND,
    RUN_FOLDERS,
    TRIALS_WANTED,
    clean_label_markdown,
    load_run,
    load_runs,
)
from poisonlab.reporting.clean_label_runs import config_path, seeds_of
from poisonlab.reporting.clean_label_setup import victim_training
from poisonlab.reporting.results_docs import markdown_tables, missing_tables
from poisonlab.reporting.stats import rate_difference, wilson_interval

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
FOLDERS = [RESULTS / "clean_label" / name for name in RUN_FOLDERS]


def flat(text: str) -> str:
    """The text with its line wrapping undone."""
    return " ".join(text.split())


# ---------------------------------------------------------------- the committed page
def test_clean_label_page_is_the_generator_output() -> None:
    page = (RESULTS / "clean_label.md").read_text(encoding="utf-8")
    assert page == clean_label_markdown(load_runs(FOLDERS)), (
        f"docs/results/clean_label.md differs from its results.json: run {COMMAND}"
    )


def test_the_page_holds_every_table_and_links_the_design_note() -> None:
    page = (RESULTS / "clean_label.md").read_text(encoding="utf-8")
    runs = load_runs(FOLDERS)
    tables = [t for t in doc_tables(runs) if t.startswith("|")]  # an empty one is a line of text
    assert missing_tables(page, tables) == []
    assert len(markdown_tables(page)) == 1 + len(tables)  # + the attacks' table
    assert "](../clean-label-notes.md)" in page
    assert (ROOT / "docs" / "clean-label-notes.md").is_file()


def run_report(folder: Path) -> Path:
    """A run folder's report: ``report_pooled.md`` for a run over several seeds."""
    pooled = folder / "report_pooled.md"
    return pooled if pooled.is_file() else folder / "report.md"


def test_the_committed_configs_are_the_ones_the_runs_recorded() -> None:
    """The configs the page's reproduce block names are the ones the runs recorded (a data_dir
    the run took from the environment is where the data was, not a setting)."""
    for run in load_runs(FOLDERS):
        config = load_clean_label(ROOT / config_path(run)).model_dump(mode="json")
        config.pop("base_dir")
        if config["dataset"]["data_dir"] is None:
            config["dataset"]["data_dir"] = run["config"]["dataset"]["data_dir"]
        recorded = dict(run["config"])
        if "seeds" in recorded:  # a pooled run: `--seeds N` replaced the config's seed
            assert recorded.pop("seeds") == list(range(len(seeds_of(run)))), run["config"]["name"]
            config.pop("seed")
        assert config == recorded, run["config"]["name"]
        seeds = f" --seeds {len(seeds_of(run))}" if "seeds" in run["config"] else ""
        assert f"poisonlab clean-label {config_path(run)} --out runs/{config['name']}{seeds}\n" in (
            RESULTS / "clean_label.md"
        ).read_text(encoding="utf-8")


def test_the_page_says_which_reports_predate_the_collapsed_column() -> None:
    """The page names the committed report.md files that count every trial (no collapsed column)."""
    runs = load_runs(FOLDERS)
    old = [f.name for f in FOLDERS if "collapsed victims" not in run_report(f).read_text(encoding="utf-8")]
    assert [r["report_collapsed"] for r in runs] == [f.name not in old for f in FOLDERS]
    page = flat((RESULTS / "clean_label.md").read_text(encoding="utf-8"))
    assert old == ["scratch"]
    assert "those of `scratch` have none" in page


# ---------------------------------------------------------------- constructed runs
def config(setting: str, attacks: list[dict]) -> dict:
    transfer = setting.startswith("transfer")
    return {
        "name": f"clean-label-{setting}",
        "description": "",
        "dataset": {"name": "cifar10", "data_dir": None, "split_seed": 0},
        "setting": setting,
        "pretrain_size": 500 if transfer else None,
        "train_size": 200 if transfer else 400,
        "eval_size": 100,
        "trusted_size": 20,
        "budget": 0.05,
        "eps": 8 / 255,
        "trials": 3,
        "victim_training": {"preset": "fast", "file": None, "settings": {}},
        "linear": {"c": 1.0, "max_iter": 100},
        "attacks": attacks,
        "seed": 0,
    }


FC = {"name": "FC", "attack": "feature_collision", "params": {"steps": 5, "watermark": None}, "eps": None}
CLBD = {"name": "CLBD", "attack": "clean_label_backdoor", "params": {"steps": 2}, "eps": None}
CLBD["patch"] = {"size": 3, "offset": 1}


def trial(i: int, spec: dict, *, success: bool, acc: float, auroc: float) -> dict:
    craft = {"seconds": 6.0, "peak_rss_mib": 100.0, "max_linf": 8, "loss_initial": 1.0, "loss_final": 0.5}
    row = {"trial": i, "attack": spec["name"], "kind": spec["attack"], "success": success, "control": False}
    row |= {"clean_accuracy": acc, "poisons": 10, "craft": craft, "victim_train_seconds": 4.0}
    row["detection"] = {
        "label_drift": {"precision": None, "recall": 0.0, "f1": 0.0, "auroc": 0.5, "flagged": 0},
        "spectral_signatures": {"precision": 0.5, "recall": 0.4, "f1": 0.44, "auroc": auroc, "flagged": 8},
    }
    if spec["attack"] == "clean_label_backdoor":
        row["craft"] = craft | {"max_linf": 255, "max_linf_adversarial": 8}
        row |= {"backdoor_rate": 0.10 + i / 100, "backdoor_rate_clean": 0.02}
    return row


def recorded(run: dict) -> dict:
    """The run with the command that made it recorded (a constructed run has no known name)."""
    name = run["config"]["name"]
    command = ["poisonlab", "clean-label", f"/lab/experiments/test/{name}.yaml", "--out", f"runs/{name}"]
    run.setdefault("provenance", {}).update(command=command, cwd="/lab")
    return run


def small_runs() -> list[dict]:
    """transfer_linear: FC 3/3, CLBD 0/3; scratch: FC 0/2 (+1 collapsed victim), CLBD 1/3."""
    clean = {"victim_accuracy": 0.80, "poisons": 10, "train_size": 200, "eval_size": 100}
    clean |= {"surrogate_id": "s-1", "surrogate_accuracy": 0.85}
    linear = {"config": config("transfer_linear", [FC, CLBD]), "clean": clean, "trials": []}
    scratch = {"config": config("scratch", [FC, CLBD]), "clean": clean | {"train_size": 400, "poisons": 20}}
    scratch["trials"] = []
    for i in range(3):
        linear["trials"] += [
            trial(i, FC, success=True, acc=0.79, auroc=0.9 + i / 100),
            trial(i, CLBD, success=False, acc=0.78 + i / 100, auroc=0.6),
        ]
        scratch["trials"] += [
            trial(i, FC, success=False, acc=0.50 if i == 0 else 0.79, auroc=0.4 + i / 10),
            trial(i, CLBD, success=i == 1, acc=0.80, auroc=0.5 + i / 10),
        ]
    return [recorded(linear), recorded(scratch)]


def test_the_page_from_constructed_runs() -> None:
    page = flat(clean_label_markdown(small_runs(), command="make it"))
    lo, hi = wilson_interval(3, 3)
    assert (
        "FC (`feature_collision`) flipped the victim in 3 of 3 `transfer_linear` trials "
        f"(Wilson {100 * lo:.0f}-100 %)" in page
    )
    d = rate_difference(3, 3, 0, 2)
    assert f"FC's 3/3 against 0/2 in `scratch` (+100 points, Newcombe {100 * d.low:+.0f} to +100)" in page
    assert d.excludes_zero and "0 is outside the interval of the difference for FC's 3/3" in page
    assert (
        "1 `scratch` victim collapsed (accuracies 0.500 against the clean victim's 0.800; none succeeded)"
        in page
    )
    assert "no `transfer_linear` victim did" in page
    assert (
        "**FC in `transfer_linear` at 100 % against the paper's 22 %**: 22 % is outside our interval "
        f"({100 * lo:.0f}-100 %)" in page
    )
    assert "0 of the 12 trial rows (trials x attacks) below, so no success came from the patch alone" in page
    assert "CLBD 8/255 before its patch, 255/255 with it (eps 8/255)" in page
    assert (
        "**`label_drift` sees nothing**: AUROC 0.50 and no flag on every one of the 12 trial rows "
        "(the labels are right)" in page
    )
    assert "10 of 200 training images" not in page and "200 other training images, 10 of them poisons" in page
    assert (
        "The victims' training recipes above are the recorded config's preset resolved by today's code"
        in page
    )
    assert "Generated by `make it`" in page


def test_the_page_names_the_settings_cut_below_the_trials_wanted_and_their_cost() -> None:
    # 3 trials of 2 attacks, 6 s crafting + 4 s victim training each: 20 s a trial, 47 missing
    page = flat(clean_label_markdown(small_runs(), command="make it"))
    missing = (
        f"the other {TRIALS_WANTED - 3} would take at least {20 * (TRIALS_WANTED - 3) / 3600:.1f} h more"
    )
    assert f"Cut below our aim of {TRIALS_WANTED} trials per setting" in page
    assert f"`transfer_linear` ran 3 ({missing}" in page and f"`scratch` ran 3 ({missing}" in page
    full = small_runs()
    for run in full:
        run["trials"] = [
            trial(i, spec, success=True, acc=0.8, auroc=0.6)
            for i in range(TRIALS_WANTED)
            for spec in (FC, CLBD)
        ]
    page = flat(clean_label_markdown(full, command="make it"))
    assert f"Every setting ran at least {TRIALS_WANTED} trials." in page and "Cut below" not in page


def test_a_recorded_recipe_is_used_and_not_called_todays() -> None:
    runs = small_runs()
    for run in runs:
        run["provenance"]["parameters"] = {"victim_training": {"epochs": 3, "optimizer": "adam", "lr": 0.001}}
        run["provenance"]["parameters"]["victim_training"] |= {
            "batch_size": 32,
            "augment": None,
            "label_smoothing": 0,
        }
    assert victim_training(runs[1]) == (runs[1]["provenance"]["parameters"]["victim_training"], True)
    page = flat(clean_label_markdown(runs))
    assert "from scratch (3 epochs, ADAM lr 0.001, batch 32, **no augmentation**, label smoothing 0)" in page
    assert "resolved by today's code" not in page


def test_auroc_table_marks_intervals_that_leave_chance() -> None:
    cells = {(c["setting"], c["attack"], c["defense"]): c for c in auroc_cells(small_runs())}
    assert cells[("transfer_linear", "FC", "spectral_signatures")]["side"] == "above"
    assert cells[("transfer_linear", "FC", "label_drift")]["side"] is None
    assert cells[("scratch", "FC", "spectral_signatures")]["flagged"] == 8
    table = auroc_table(small_runs())
    assert "| transfer_linear | FC | 3 | 0.50 [0.50, 0.50] | 0.91 [" in table and "] above |" in table
    one = copy.deepcopy(small_runs()[:1])
    one[0]["trials"] = one[0]["trials"][:2]
    assert "(single trial)" in auroc_table(one)


def test_seeds_pooled_into_one_run_make_a_page() -> None:
    first = small_runs()[1]
    second = copy.deepcopy(first)
    second["config"]["seed"] = 1
    page = flat(clean_label_markdown([recorded(pool_seeds([first, second]))]))
    assert (
        "1 of 6 `scratch` trials" not in page
        and "CLBD (`clean_label_backdoor`) flipped the victim in 2 of 6" in page
    )
    assert "2 `scratch` victims collapsed" in page and "trial 1 (seed 0), FC: 0.790 against 0.800" in page


def test_a_folder_of_seeds_is_read_from_its_pooled_results(tmp_path) -> None:
    first = small_runs()[0]
    second = copy.deepcopy(first)
    second["config"]["seed"] = 1
    second["clean"] |= {"surrogate_id": "s-2", "surrogate_accuracy": 0.75, "victim_accuracy": 0.70}
    folder = write(tmp_path / "run", {"config": {}})  # a results.json the pooled file overrides
    pooled = pool_seeds([first, second])
    (folder / "results_pooled.json").write_text(json.dumps(pooled), encoding="utf-8")
    (folder / "report_pooled.md").write_text("| collapsed victims |", encoding="utf-8")
    run = load_run(folder)
    assert run["config"]["seeds"] == [0, 1] and len(run["trials"]) == 12 and run["report_collapsed"]
    page = flat(clean_label_markdown([run]))
    assert (
        "each of the 2 seeds (0, 1) pre-trains its own surrogate, the chapter CNN on 500 "
        "CIFAR-10 images (accuracy 0.850, 0.750 on 100 evaluation images; the clean victims 0.800, "
        "0.700), and draws its own trials" in page
    )
    assert "| transfer_linear | 0.750 |" in page  # the clean victims' mean, not seed 0's
    assert "--out runs/clean-label-transfer_linear --seeds 2" in page  # what wrote seed-0 and seed-1
    gapped = pool_seeds([first, copy.deepcopy(second) | {"config": {**second["config"], "seed": 3}}])
    with pytest.raises(ValueError, match=r"pooled seeds \[0, 3\] are not 0..N-1"):
        clean_label_markdown([gapped])  # no --seeds N writes seeds 0 and 3: no command to print


def test_no_success_and_no_defense_still_make_a_page() -> None:
    runs = small_runs()
    for run in runs:
        for row in run["trials"]:
            row["success"], row["detection"] = False, {}
    page = flat(clean_label_markdown(runs))
    assert "**No trial succeeded in any setting.**" in page and "(no defense ran)" in page


# ---------------------------------------------------------------- missing and malformed files
def write(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (folder / "results.json").write_text(text, encoding="utf-8")
    return folder


def test_missing_results_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="result file not found: .*results.json"):
        load_run(tmp_path / "nowhere")


def _broken(change) -> dict:
    run = small_runs()[0]
    change(run)
    return run


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "results.json: not JSON"),
        ([1, 2], "results.json: expected a JSON object, got list"),
        ({"config": {}, "clean": {}}, "results.json: lacks trials"),
        (_broken(lambda r: r["config"].pop("setting")), "config: lacks setting"),
        (_broken(lambda r: r["clean"].pop("victim_accuracy")), "clean: lacks victim_accuracy"),
        (_broken(lambda r: r.update(trials=[])), "no trial rows"),
        (_broken(lambda r: r["trials"][1].pop("success")), "trial row 1: lacks success"),
        (
            _broken(lambda r: r["trials"][0].update(attack="XX")),
            "trial row 0 is of attack 'XX', not in the config",
        ),
    ],
)
def test_malformed_results_raise_value_error(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_run(write(tmp_path / "run", data))


def test_no_run_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        clean_label_markdown([])


# ---------------------------------------------------------------- the command
def _command():
    spec = importlib.util.spec_from_file_location(
        "clean_label_table", ROOT / "benchmarks" / "clean_label_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_writes_the_page_and_fails_cleanly(tmp_path: Path, capsys) -> None:
    main = _command().main
    folders = [str(write(tmp_path / run["config"]["setting"], run)) for run in small_runs()]
    out = tmp_path / "page.md"
    assert main([*folders, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text == clean_label_markdown(
        load_runs(folders), command=f"python benchmarks/clean_label_table.py {' '.join(folders)} --out {out}"
    )
    assert capsys.readouterr().out == text
    assert main([*folders, "--tables"]) == 0
    assert capsys.readouterr().out == "\n\n".join(doc_tables(load_runs(folders))) + "\n"
    assert main([str(tmp_path / "none"), "--out", str(tmp_path / "x.md")]) == 2
    assert "error: result file not found" in capsys.readouterr().err and not (tmp_path / "x.md").exists()
    with pytest.raises(SystemExit):
        main([*folders, "--tables", "--out", str(out)])
