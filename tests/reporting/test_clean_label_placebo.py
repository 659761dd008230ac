"""A placebo run (every attack row ``random_noise``) on the clean-label page is the control, not an attack.

Checked on the constructed runs of ``test_clean_label_doc`` plus a constructed ``transfer_finetune``
run of two crafted attacks (3 of its 10 victims collapse) and a placebo run of the same setting (1
of its 8 victims collapses, 1 of the 7 that trained flips, no defense ran): the collapse paragraph
sets the placebo's collapses against the crafted attacks' (Wilson, Newcombe, whether 0 is outside,
whether the surrogate is shared), the old "has not been run" sentence stays without a placebo, the
placebo renders without defenses and reads as the control, and none of its victims count as crafted.
"""

from __future__ import annotations

import copy

from test_clean_label_doc import CLBD, FC, config, flat, recorded, small_runs, trial

from poisonlab.reporting.clean_label_collapse import collapse_paragraph, placebo_collapse_text
from poisonlab.reporting.clean_label_doc import auroc_table, detection_table, doc_tables, success_table
from poisonlab.reporting.clean_label_page import clean_label_markdown
from poisonlab.reporting.clean_label_runs import is_placebo, label_runs, placebo_row, setting_label
from poisonlab.reporting.stats import rate_difference, wilson_interval

PLACEBO = {"name": "placebo", "attack": "random_noise", "params": {"distribution": "sign"}, "eps": None}
OLD = (
    "The margin was set with these runs in view. A clean or placebo fine-tune control (the same recipe, "
    "several seeds, no poison) that would say how often the recipe collapses by itself has not been run."
)


def _clean(**extra) -> dict:
    clean = {"victim_accuracy": 0.80, "poisons": 10, "train_size": 200, "eval_size": 100}
    return clean | {"surrogate_id": "s-1", "surrogate_accuracy": 0.85} | extra


def finetune(collapses: int = 3) -> dict:
    """transfer_finetune, FC and CLBD over 5 trials: the first ``collapses`` rows collapse (0.50)."""
    rows = []
    for i in range(5):
        rows += [
            trial(i, FC, success=False, acc=0.79, auroc=0.6),
            trial(i, CLBD, success=False, acc=0.78, auroc=0.6),
        ]
    for row in rows[:collapses]:
        row["clean_accuracy"] = 0.50
    return recorded({"config": config("transfer_finetune", [FC, CLBD]), "clean": _clean(), "trials": rows})


def placebo(**clean) -> dict:
    """The placebo of transfer_finetune: 8 trials, trial 0 collapses, trial 5 flips, no defense."""
    rows = []
    for i in range(8):
        row = trial(i, PLACEBO, success=i == 5, acc=0.50 if i == 0 else 0.78, auroc=0.5)
        row["detection"] = {}
        rows.append(row)
    cfg = config("transfer_finetune", [PLACEBO]) | {"name": "placebo-ft"}
    return recorded({"config": cfg, "clean": _clean(**clean), "trials": rows})


def page(*runs: dict) -> str:
    return flat(clean_label_markdown([*small_runs(), *runs], command="make it"))


def _wilson(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"Wilson 95 %: {100 * lo:.0f}-{100 * hi:.0f} %"


def test_a_placebo_run_is_told_apart_and_labelled_as_one() -> None:
    mixed = copy.deepcopy(finetune())
    mixed["config"]["attacks"].append(PLACEBO)
    assert is_placebo(placebo()) and not is_placebo(finetune()) and not is_placebo(mixed)
    assert not is_placebo({"config": {"setting": "scratch", "name": "x"}})  # no attack row: no placebo
    assert placebo_row(PLACEBO) and placebo_row(placebo()["trials"][0]) and not placebo_row(FC)
    labels = [setting_label(r) for r in label_runs([placebo(), finetune(), placebo()])]
    assert labels == [
        "transfer_finetune (placebo)",
        "transfer_finetune",
        "transfer_finetune (placebo-ft, run 3)",
    ]


def test_the_collapse_paragraph_sets_the_placebo_against_the_crafted_attacks() -> None:
    text = flat(collapse_paragraph([*small_runs(), finetune(), placebo()]))
    d = rate_difference(3, 10, 1, 8)
    assert not d.excludes_zero
    assert (
        "The margin was set with the crafted runs in view, before the placebo ran. **The placebo control** "
        "(`random_noise`: 10 target-class images per trial, as many as a crafted attack changes, moved at "
        f"random inside 8/255): 1 of the 8 `transfer_finetune (placebo)` victims collapsed "
        f"({100 / 8:.0f} %, {_wilson(1, 8)})." in text
    )
    assert (
        "The crafted attacks of `transfer_finetune` collapsed 3 of their 10 victims (2 attack rows pooled "
        f"over 5 trials; 30 %, {_wilson(3, 10)}): crafted minus placebo {100 * d.estimate:+.0f} points, "
        f"Newcombe 95 % {100 * d.low:+.0f} to {100 * d.high:+.0f} points, 0 inside it" in text
    )
    assert "these runs do not show that the crafted poisons collapse the victims at another rate" in text
    assert (
        "The placebo and the crafted runs share the surrogate (`s-1`); each victim is measured against its "
        "own run's clean victim (0.800 for the placebo, 0.800 for the crafted attacks)." in text
    )
    assert "has not been run" not in text and "unpaired" not in text


def test_zero_outside_the_interval_and_another_surrogate_are_said() -> None:
    d = rate_difference(8, 10, 1, 8)
    assert d.excludes_zero and d.estimate > 0
    text = flat(
        placebo_collapse_text([finetune(collapses=8), placebo(surrogate_id="s-9", victim_accuracy=0.7)])
    )
    assert f"Newcombe 95 % {100 * d.low:+.0f} to {100 * d.high:+.0f} points, 0 outside it" in text
    # on another surrogate an interval that excludes 0 still does not say the poisons did it
    assert "the crafted poisons collapsed the victims more often" not in text
    assert "the crafted runs collapsed more victims, but on another surrogate and clean victim" in text
    paired = flat(placebo_collapse_text([finetune(collapses=8), placebo(victim_accuracy=0.7)]))
    assert "the crafted poisons collapsed the victims more often than the random perturbation did." in paired
    assert (
        "The comparison is unpaired: the placebo ran on another surrogate (`s-9`, against `s-1`) and another "
        "clean victim (accuracy 0.700, against 0.800)." in text
    )
    # its victims are measured against its own clean victim (0.70): 0.50 still collapses, 0.78 does not
    assert "1 of the 8 `transfer_finetune (placebo)` victims collapsed" in text


def test_without_a_placebo_the_old_sentence_stays() -> None:
    runs = [*small_runs(), finetune()]
    assert OLD in flat(collapse_paragraph(runs)) and placebo_collapse_text(runs) == ""
    assert "**The placebo control**" not in flat(clean_label_markdown(runs))
    assert "needs the placebo control above." in flat(clean_label_markdown(runs))


def test_a_placebo_alone_in_its_setting_says_there_is_nothing_to_compare() -> None:
    text = flat(clean_label_markdown([placebo()]))
    assert "1 of the 8 `transfer_finetune (placebo)` victims collapsed" in text
    assert "no crafted attack of `transfer_finetune` is on this page to set it against." in text
    assert "**No attack succeeded in any setting.**" in text


def test_a_placebo_without_defenses_renders_as_the_control() -> None:
    runs = [*small_runs(), finetune(), placebo()]
    table = success_table(runs)
    assert (
        "| transfer_finetune (placebo) | placebo (random_noise, control) | 8/255 | 10 / 200 | 1/7 |" in table
    )
    assert table.splitlines()[-1].endswith("| 0/8 | - |")  # no published figure
    assert "(placebo)" not in auroc_table(runs) and "random_noise" not in detection_table(runs)
    assert len(doc_tables(runs)) == 7
    text = page(finetune(), placebo())
    assert "`transfer_finetune (placebo)` ran none" in text
    assert "| placebo | `random_noise` | none: the placebo control of the attacks above |" in text
    assert "placebo no optimisation (one random `sign` perturbation per poison)" in text
    assert "the placebo control of `transfer_finetune`, config `experiments/test/placebo-ft.yaml`" in text
    assert "poisonlab clean-label experiments/test/placebo-ft.yaml --out runs/placebo-ft" in text


def test_the_placebo_is_not_counted_among_the_crafted_attacks() -> None:
    text = page(finetune(), placebo())
    without = page(finetune())
    assert "collapsed 3 of their 10 victims" in text  # not 4 of 18: the placebo's collapse is its own
    head = without[without.index("**Successes were observed") :].split("**:")[0]
    assert head in text  # its flip makes no setting "succeed"
    assert (
        "placebo (`random_noise`) flipped the victim in 1 of 7 `transfer_finetune (placebo)` trials" in text
    )
    assert f"(Wilson {_wilson(1, 7).removeprefix('Wilson 95 %: ')}), the chance rate of a random" in text
    assert "**The placebo is the control, not an attack:**" in text
    zeros = text[text.index("**That the other rows' attacks do not work is not shown**") :].split(".")[0]
    assert "for 7 trials" not in zeros  # its 7 victims that trained are no failed attack
    attacks = text[text.index("**Successes were observed") : text.index("**The placebo is the control")]
    assert "placebo" not in attacks  # no hit, difference or zero row of the placebo among the attacks'
    assert (
        "for `transfer_finetune` the placebo control (`transfer_finetune (placebo)`) sets the losses and the "
        "collapses beside a random perturbation" in text
    )
    assert "`transfer_linear` and `scratch` have none, so whether the poison or the recipe causes" in text
