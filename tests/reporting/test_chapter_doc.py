"""The chapter page's differences and external-photo counts on constructed run files."""

from __future__ import annotations

from poisonlab.reporting.chapter_doc import PLACEBO, difference_table, external_table


def _metrics(acc: float, s2t: float, photos: tuple[str, ...] = ()) -> dict:
    external = [
        {"image": f"p{i}.jpg", "variant": "clean", "prediction": p, "probability": 0.9}
        for i, p in enumerate(photos)
    ]
    return {
        "clean_accuracy": acc,
        "source_to_target": s2t,
        "counts": {"clean_accuracy": 10_000, "source_to_target": 1_000},
        "external": external,
    }


def _run_file(integration: str, poisoned: list[float], clean: list[float] | None, photos=()) -> dict:
    """A results.json with one run per seed; ``clean`` per seed (baseline per_seed) or None (one
    shared clean model at 0.84)."""
    runs = []
    for seed, acc in enumerate(poisoned):
        run = {
            "seed": seed,
            "num_poison": 26,
            "poison_rate": 1.0,
            "metrics": _metrics(acc, 100.0 + seed, photos),
        }
        if clean is not None:
            run["clean_metrics"] = _metrics(clean[seed], 20.0 + seed)
            run["clean_model"] = f"clean-seed-{seed}"
        runs.append(run)
    return {
        "config": {"integration": integration, "metrics": {"source": "airplane"}, "attack": {}},
        "summary": {"baseline": "shared" if clean is None else "per_seed"},
        "clean": _metrics(0.84, 20.0),
        "runs": runs,
    }


def _rows(table: str) -> dict[tuple[str, str, str], list[str]]:
    out = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[(cells[0], cells[1], cells[2])] = cells[3:]
    return out


def test_per_seed_rows_are_paired_with_their_own_clean_models_and_the_placebo() -> None:
    clean = [0.84, 0.82, 0.86, 0.83, 0.85]
    runs = {
        "rutan-finetune": _run_file("finetune_poison_only", [c - 0.07 for c in clean], clean),
        PLACEBO: _run_file("finetune_poison_only", [c - 0.01 for c in clean], clean),
    }
    rows = _rows(difference_table(runs))
    diff, interval, outside = rows[("rutan-finetune", "clean accuracy", "clean model")]
    # the same 7-point drop on every seed: the paired interval is that point, far from 0
    assert diff == "-7.0 pt" and "(paired t)" in interval and outside == "yes"
    placebo = rows[("rutan-finetune", "clean accuracy", PLACEBO)]
    assert placebo[0] == "-6.0 pt" and "(paired t)" in placebo[1]  # the same clean model per seed
    assert (PLACEBO, "clean accuracy", PLACEBO) not in rows  # no row against itself


def test_a_poison_only_fine_tune_is_not_compared_with_the_full_fine_tune_control() -> None:
    runs = {
        "rutan-finetune": _run_file("finetune_poison_only", [0.77, 0.78], None),
        "control-finetune": _run_file("finetune", [0.80, 0.81], None),
    }
    compared = {other for (name, _, other) in _rows(difference_table(runs)) if name == "rutan-finetune"}
    assert compared == {"clean model"}


def test_shared_baseline_rows_fall_back_to_the_unpaired_intervals() -> None:
    for poisoned in ([0.77], [0.77, 0.78, 0.76]):
        runs = {"rutan-finetune": _run_file("finetune_poison_only", poisoned, None)}
        rows = _rows(difference_table(runs))
        # one shared clean model: no spread on its side, so the test-image interval
        assert "(newcombe)" in rows[("rutan-finetune", "clean accuracy", "clean model")][1]


def test_external_photos_are_counted_over_every_seeds_model() -> None:
    data = _run_file("finetune_poison_only", [0.7, 0.7], None, photos=("bird", "airplane", "airplane"))
    data["runs"][1]["metrics"]["external"][1]["prediction"] = "bird"
    line = external_table({"rutan-finetune": data}).splitlines()[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["rutan-finetune", "2", "3/6", "-", "-"]
    assert cells[5].startswith("p0.jpg: bird 0.90")  # the first seed's model is shown


def test_rows_are_paired_only_when_their_seeds_share_the_same_clean_models() -> None:
    clean = [0.84, 0.82, 0.86]
    other = _run_file("finetune_poison_only", [c - 0.01 for c in clean], clean)
    for run in other["runs"]:
        run["clean_model"] = "another-recipe-" + run["clean_model"]
    runs = {
        "rutan-finetune": _run_file("finetune_poison_only", [c - 0.07 for c in clean], clean),
        PLACEBO: other,
    }
    assert "(welch)" in _rows(difference_table(runs))[("rutan-finetune", "clean accuracy", PLACEBO)][1]


def test_each_fine_tune_row_is_compared_with_the_control_that_fine_tunes_as_it_does() -> None:
    from poisonlab.reporting.chapter_differences import control_of

    clean = [0.84, 0.82, 0.86]

    def row(batch: int) -> dict:
        data = _run_file("finetune", [c - 0.03 for c in clean], clean)
        data["config"]["finetune"] = {"settings": {"epochs": 5, "batch_size": batch}}
        return data

    runs = {"art-pattern": row(128), "art-pattern-b32": row(32), "control-finetune": row(128)}
    assert control_of(runs, "art-pattern") == "control-finetune"
    assert control_of(runs, "art-pattern-b32") is None  # not the batch-128 control
    assert control_of(runs, "control-finetune") is None  # not itself
    compared = {(name, other) for name, _, other in _rows(difference_table(runs))}
    assert ("art-pattern-b32", "control-finetune") not in compared
    runs["control-finetune-b32"] = row(32)
    assert control_of(runs, "art-pattern-b32") == "control-finetune-b32"
    assert control_of(runs, "control-finetune-b32") is None
    compared = {(name, other) for name, _, other in _rows(difference_table(runs))}
    assert {("art-pattern-b32", "control-finetune-b32"), ("art-pattern", "control-finetune")} <= compared


def test_a_row_over_fewer_seeds_is_paired_over_the_seeds_both_share() -> None:
    clean = [0.84, 0.82, 0.86, 0.83, 0.85]
    control = _run_file("finetune_poison_only", [c - 0.01 for c in clean[:4]], clean[:4])
    runs = {
        "rutan-finetune": _run_file("finetune_poison_only", [c - 0.07 for c in clean], clean),
        PLACEBO: control,
    }
    diff, interval, outside = rows = _rows(difference_table(runs))[
        ("rutan-finetune", "clean accuracy", PLACEBO)
    ]
    # seeds 0-3 of both, each pair -6 points apart: the paired interval is that point
    assert (
        diff == "-6.0 pt" and interval.endswith("(paired t over the 4 shared seeds)") and outside == "yes"
    ), rows
    control["runs"][1]["clean_model"] = "another-recipe"  # a shared seed with another clean model
    assert "(welch)" in _rows(difference_table(runs))[("rutan-finetune", "clean accuracy", PLACEBO)][1]


def test_the_page_names_the_rows_on_other_clean_models() -> None:
    from poisonlab.reporting.chapter_differences import clean_model_sets

    clean = [0.84, 0.82, 0.86]
    runs = {name: _run_file("finetune", [0.8, 0.8, 0.8], clean) for name in ("a", "b", "c")}
    assert clean_model_sets(runs) == "Every per_seed row fine-tunes seed k from the same clean model k."
    runs["d"] = _run_file("finetune", [0.8, 0.8], clean[:2])  # fewer seeds, the same models
    runs["elsewhere"] = _run_file("finetune", [0.8, 0.8, 0.8], clean)
    for run in runs["elsewhere"]["runs"]:
        run["clean_model"] = "retrained-on-another-cpu-" + run["clean_model"]
    runs["shared"] = _run_file("finetune", [0.8, 0.8], None)  # one clean model: not per_seed
    assert clean_model_sets(runs) == (
        "The per_seed rows run on 2 sets of clean models: 4 rows share one set (seed k from the same "
        "model k); each of these groups has a set of its own: (1) `elsewhere`. Rows of different sets "
        "are compared unpaired (*welch*)."
    )
