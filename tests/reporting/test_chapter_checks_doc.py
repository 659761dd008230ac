"""The chapter page's robustness and adversarial-training sections read the runs' own aggregates."""

from __future__ import annotations

from poisonlab.experiments.common.measure import aggregate
from poisonlab.reporting.chapter_checks_doc import checks_sections, mitigation_table, robustness_table


def _run(robustness: dict | None = None, mitigation: dict | None = None) -> dict:
    summary: dict = {}
    if robustness is not None:
        summary["robustness"] = robustness
    if mitigation is not None:
        summary["mitigation"] = mitigation
    return {"summary": summary}


def _robustness() -> dict:
    clean = aggregate([{"canary_failures": 0.0, "canary_accuracy": 1.0, "sensitivity_flagged": 0.0}],
                      [{"canary_accuracy": 50}])  # fmt: skip
    poisoned = aggregate(
        [
            {"canary_failures": f, "canary_accuracy": 1 - f / 50, "sensitivity_flagged": 1.0}
            for f in (4.0, 6.0)
        ],
        [{"canary_accuracy": 50}] * 2,
    )
    return {"clean": clean, "poisoned": poisoned}


def _mitigation() -> dict:
    poisoned = aggregate([{"attack_success_rate": 0.95}, {"attack_success_rate": 0.97}])
    mitigated = aggregate([{"attack_success_rate": 0.10}, {"attack_success_rate": 0.14}])
    control = aggregate([{"attack_success_rate": 0.90}, {"attack_success_rate": 0.94}])
    diff = aggregate([{"attack_success_rate": -0.80}, {"attack_success_rate": -0.80}])
    return {"poisoned": poisoned, "mitigated": mitigated, "control": control, "mitigated_minus_control": diff}


def test_robustness_rows_show_each_models_aggregate_and_the_canary_count() -> None:
    table = robustness_table({"robustness-pattern": _run(robustness=_robustness())})
    assert "canaries misclassified (of 50)" in table
    row = next(line for line in table.splitlines() if "canaries misclassified" in line)
    assert "| 0 (1 run) |" in row and "| 5 (" in row and "n=2)" in row  # clean single run, poisoned 2 seeds
    assert "trigger test flagged" in table


def test_mitigation_rows_say_whether_zero_is_outside_the_difference() -> None:
    table = mitigation_table({"adversarial-training-pattern": _run(mitigation=_mitigation())})
    row = next(line for line in table.splitlines() if "| ASR |" in line)
    assert row.rstrip().endswith("| yes |")  # -0.80 twice: std 0, interval [-0.8, -0.8]
    assert "0.96 (" in row and "0.12 (" in row


def test_runs_without_the_blocks_leave_the_page_unchanged() -> None:
    assert checks_sections({"art-pattern": _run()}) == []
    assert robustness_table({"a": _run()}) is None and mitigation_table({"a": _run()}) is None


def test_both_sections_when_runs_have_both_blocks() -> None:
    runs = {"robustness-pattern": _run(robustness=_robustness()), "adv": _run(mitigation=_mitigation())}
    lines = checks_sections(runs)
    assert "## Robustness tests (canaries, ART-style trigger test)" in lines
    assert "## Adversarial training" in lines


def test_a_count_interval_recorded_below_zero_is_cut_to_its_range() -> None:
    # a file written before the cut: failures 1, 3, 1 over 3 seeds, t interval as recorded (-1.2 to 4.5)
    poisoned = aggregate([{"canary_failures": f} for f in (1.0, 3.0, 1.0)])
    assert poisoned["canary_failures"]["ci_low"] < 0
    table = robustness_table({"robustness-rutan": _run(robustness={"poisoned": poisoned})})
    row = next(line for line in table.splitlines() if "canaries misclassified" in line)
    assert "(0 to 4.54, n=3)" in row


def test_a_single_runs_difference_gets_the_test_image_interval() -> None:
    counts = [{"attack_success_rate": 1000}]  # 1,000 triggered test images per model
    summary = {
        "poisoned": aggregate([{"attack_success_rate": 0.976}], counts),
        "mitigated": aggregate([{"attack_success_rate": 0.038}], counts),
        "control": aggregate([{"attack_success_rate": 0.876}], counts),
        "mitigated_minus_control": aggregate([{"attack_success_rate": -0.838}]),
    }
    table = mitigation_table({"adversarial-training-pattern": _run(mitigation=summary)})
    row = next(line for line in table.splitlines() if "| ASR |" in line)
    from poisonlab.reporting.stats import rate_difference

    d = rate_difference(38, 1000, 876, 1000)
    assert f"{d.low:+.3f} to {d.high:+.3f} over the test images" in row
    assert row.rstrip().endswith("| yes |")


def test_a_single_runs_count_difference_is_shown_in_images() -> None:
    counts = [{"source_to_target": 1000}]  # test airplanes predicted bird, of 1,000
    summary = {
        m: aggregate([{"source_to_target": v}], counts)
        for m, v in (("poisoned", 95.0), ("mitigated", 26.0), ("control", 38.0))
    }
    summary["mitigated_minus_control"] = aggregate([{"source_to_target": -12.0}])
    row = next(
        line
        for line in mitigation_table({"adv": _run(mitigation=summary)}).splitlines()
        if "airplanes -> bird" in line
    )
    from poisonlab.reporting.stats import rate_difference

    d = rate_difference(26, 1000, 38, 1000)
    assert f"{1000 * d.low:+.0f} to {1000 * d.high:+.0f} over the test images" in row
    assert row.rstrip().endswith("| no |")
