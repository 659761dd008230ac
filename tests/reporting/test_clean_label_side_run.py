"""A second run of a setting already on the clean-label page (the chapter's feature collision in
``transfer_linear``, no L-inf budget, no defenses) is told apart and described for what it is.

Checked on the constructed runs of ``test_clean_label_doc`` plus a constructed side run: its
rows carry their own label, prose lists no setting twice, eps 255/255 reads as no budget with the
largest change measured, the paper's figure is said to be for the paper's protocol, the
reproduce block names the config the run recorded, and the old runs' rows are unchanged.
"""

from __future__ import annotations

import copy

import pytest
from test_clean_label_doc import config, flat, recorded, small_runs, trial

from poisonlab.reporting.clean_label_doc import doc_tables, success_table
from poisonlab.reporting.clean_label_page import clean_label_markdown
from poisonlab.reporting.clean_label_setup import PAPER
from poisonlab.reporting.stats import wilson_interval

FC_X = {"name": "FC-x", "attack": "feature_collision", "params": {"steps": 5, "watermark": 0.3}, "eps": None}
FC_Y = {**FC_X, "name": "FC-y", "params": {"steps": 50, "watermark": 0.3}, "patch": {"size": 8, "offset": 5}}


def side_run() -> dict:
    """transfer_linear again, eps 1.0 (no budget), FC-x and FC-y 3/3 each, no defense ran."""
    cfg = config("transfer_linear", [FC_X, FC_Y]) | {"name": "fc-side", "eps": 1.0}
    clean = {"victim_accuracy": 0.80, "poisons": 10, "train_size": 200, "eval_size": 100}
    clean |= {"surrogate_id": "s-2", "surrogate_accuracy": 0.85}
    rows = []
    for i in range(3):
        for spec, worst in ((FC_X, 177), (FC_Y, 130 - i)):
            row = trial(i, spec, success=True, acc=0.79, auroc=0.5)
            row["detection"], row["craft"] = {}, row["craft"] | {"max_linf": worst}
            rows.append(row)
    return recorded({"config": cfg, "clean": clean, "trials": rows})


def page() -> str:
    return flat(clean_label_markdown([*small_runs(), side_run()], command="make it"))


def test_the_side_run_has_its_own_label_and_the_old_rows_stay() -> None:
    table = success_table([*small_runs(), side_run()])
    assert "| transfer_linear (fc-side) | FC-x | none (255/255) | 10 / 200 | 3/3 |" in table
    assert "| transfer_linear | FC-x |" not in table
    assert set(success_table(small_runs()).splitlines()) <= set(table.splitlines())
    pairs = zip(doc_tables(small_runs()), doc_tables([*small_runs(), side_run()]), strict=True)
    for i, (old, new) in enumerate(pairs):
        if i != 3:  # the accuracy table gains the side run's columns
            assert all(line in new for line in old.splitlines()[2:])  # every old row, header aside


def test_prose_lists_a_setting_once() -> None:
    text = page()
    assert "no `transfer_linear` victim did." in text
    assert "**Successes were observed in `transfer_linear` and `scratch`**" in text
    assert (
        "`transfer_linear` or `transfer_linear" not in text and "`scratch` and `transfer_linear" not in text
    )
    assert (
        "FC-x (`feature_collision`) flipped the victim in 3 of 3 `transfer_linear (fc-side)` trials" in text
    )


def test_no_budget_is_said_with_the_measured_change() -> None:
    text = page()
    assert (
        "FC-x and FC-y have **no L-inf budget** (eps 255/255: only the [0, 1] pixel range bounds a "
        "change); their largest changes are 177/255 and 130/255." in text
    )
    assert "FC-x 177/255 (eps" not in text and "inside 255/255" not in text and "255/255 or" not in text
    assert "with 10 poisons and no L-inf budget (largest change 177/255)" in text
    assert (
        "5 % of the images by at most 8/255 (CLBD also pastes its patch; FC-x and FC-y have no L-inf" in text
    )
    assert "budget: largest changes 177/255 and 130/255)" in text
    assert "10 of them poisons; **no L-inf budget** (eps 255/255); **3 trials**" in text
    assert "`FC-y`, a second `feature_collision` row: steps 50 (FC-x: 5)." in text  # no patch for FC


def test_the_paper_figure_is_for_the_papers_protocol() -> None:
    text = page()
    lo, _ = wilson_interval(3, 3)
    head = (
        "**FC-x in `transfer_linear (fc-side)` at 100 % against the paper's 22 %**: 22 % is outside our "
        f"interval ({100 * lo:.0f}-100 %)."
    )
    bullet = text[text.index(head) :].split(" - ")[0]
    assert (
        "This run is one seed (seed 0) of 3 paired trials; the paper's 22 % is its average over its "
        f"architectures under its own protocol, which fine-tunes on {PAPER['transfer_train']:,} CIFAR-10 "
        f"images with {PAPER['transfer_poisons']} poisons at {PAPER['eps_255']}/255" in bullet
    )
    assert (
        "What differs: the L-inf budget (none, largest change 177/255, against the paper's "
        f"{PAPER['eps_255']}/255)" in bullet
    )


def test_defenses_and_reproduce_name_the_side_run() -> None:
    text = page()
    assert (
        "means over all trials of the 2 settings that ran them (`transfer_linear (fc-side)` ran none)" in text
    )
    assert "no flag on every one of the 12 trial rows" in text  # the side run's 6 rows ran no defense
    assert "poisonlab clean-label experiments/test/fc-side.yaml --out runs/fc-side" in text
    assert (
        '`transfer_linear (fc-side)` ("transfer learning, white box"; another `transfer_linear` run, '
        "config `experiments/test/fc-side.yaml`" in text
    )
    assert "configs in `experiments/test/`" in text


def test_a_run_without_a_command_or_a_known_name_stops_the_page() -> None:
    run = copy.deepcopy(side_run())
    del run["provenance"]
    with pytest.raises(ValueError, match="'fc-side' recorded no command and is not a known run"):
        clean_label_markdown([*small_runs(), run])
