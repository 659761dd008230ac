"""The intervals of poisonlab.reporting.stats against hand-computed and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from poisonlab.reporting.stats import (
    describe_difference,
    format_mean,
    format_rate,
    mean_difference,
    mean_interval,
    paired_difference,
    rate_difference,
    rate_interval,
    wilson_interval,
)


def test_mean_interval_uses_the_sample_std_and_student_t() -> None:
    stat = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert stat.mean == 2.5
    assert stat.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))  # 1.291, not the population 1.118
    half = 3.182446305284263 * stat.std / 2  # t(0.975, 3) * s / sqrt(4)
    assert (stat.low, stat.high) == pytest.approx((2.5 - half, 2.5 + half))
    assert stat.contains(2.5) and not stat.contains(10.0)


def test_a_single_run_has_no_spread_rather_than_zero() -> None:
    stat = mean_interval([0.7831])
    assert stat.single and stat.std is None and stat.low is None and stat.high is None
    assert stat.contains(0.5) is None
    assert stat.to_dict()["interval"] == "single run"
    assert format_mean(stat) == "0.7831"


def test_mean_interval_rejects_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        mean_interval([])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.5)


def test_wilson_interval_matches_published_values() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson_interval(0, 4) == pytest.approx((0.0, 0.4899), abs=1e-4)  # the "up to 49%" of 0/4
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


def test_rate_interval_and_its_text() -> None:
    stat = rate_interval(44, 1000)
    assert stat.rate == 0.044
    assert format_rate(stat) == "44/1000 = 4.4% [3.3, 5.9]"
    assert stat.to_dict()["interval"] == "wilson 95%"


def test_newcombe_difference_matches_the_paper() -> None:
    # Newcombe (1998), example (56/70 vs 48/80): difference 0.2000, 95% interval 0.0524 to 0.3339
    diff = rate_difference(56, 70, 48, 80)
    assert diff.estimate == pytest.approx(0.2)
    assert (diff.low, diff.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert diff.excludes_zero and diff.method == "newcombe"
    same = rate_difference(8457, 10000, 8417, 10000)  # the Rutan retrain's accuracy vs the clean model
    assert not same.excludes_zero
    assert "includes 0" in describe_difference(same)
    with pytest.raises(ValueError, match="n >= 1"):
        rate_difference(0, 0, 1, 2)


def test_welch_difference_of_means() -> None:
    a, b = [71.0, 89.0, 93.0], [50.0, 57.0, 49.0]
    diff = mean_difference(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    from scipy import stats

    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert diff.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert (diff.low, diff.high) == pytest.approx((diff.estimate - half, diff.estimate + half))
    with pytest.raises(ValueError, match=">= 2 values"):
        mean_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="zero variance"):
        mean_difference([1.0, 1.0], [2.0, 2.0])


def test_a_rate_interval_is_cut_to_its_range_and_other_figures_are_not() -> None:
    free = mean_interval([0.2, 0.8])
    assert free.low < 0 and free.high > 1  # t(0.975, 1) = 12.7: wider than any rate
    cut = mean_interval([0.2, 0.8], bounds=(0.0, 1.0))
    assert (cut.low, cut.high) == (0.0, 1.0) and (cut.mean, cut.std) == (free.mean, free.std)
    narrow = mean_interval([0.50, 0.52, 0.51], bounds=(0.0, 1.0))
    assert narrow.low == mean_interval([0.50, 0.52, 0.51]).low  # inside the range: untouched
    with pytest.raises(ValueError, match="bounds"):
        mean_interval([0.1, 0.2], bounds=(1.0, 0.0))


def test_aggregate_cuts_rates_and_counts_to_their_range_but_not_differences() -> None:
    from poisonlab.experiments.common.measure import aggregate

    values = [
        {"attack_success_rate": 0.1, "source_to_target": 3.0, "drop": -0.2, "failures": 0.0},
        {"attack_success_rate": 0.9, "source_to_target": 90.0, "drop": 0.3, "failures": 3.0},
    ]
    counts = [{"attack_success_rate": 100, "source_to_target": 100}] * 2
    out = aggregate(values, counts, bounds={"failures": (0.0, math.inf)})
    assert out["attack_success_rate"]["ci_low"] == 0.0 and out["attack_success_rate"]["ci_high"] == 1.0
    # a count of test images: [0, n] (the t interval alone would reach -5xx and +6xx)
    assert (out["source_to_target"]["ci_low"], out["source_to_target"]["ci_high"]) == (0.0, 100.0)
    assert out["failures"]["ci_low"] == 0.0 and out["failures"]["ci_high"] > 3  # a bounded count
    assert out["drop"]["ci_low"] < -1 and out["drop"]["ci_high"] > 1  # a difference, no denominator


def test_paired_difference_is_the_t_interval_of_the_per_pair_differences() -> None:
    a, b = [0.80, 0.82, 0.79, 0.85], [0.70, 0.73, 0.68, 0.74]
    diff = paired_difference(a, b)
    d = np.subtract(a, b)
    half = scipy_stats.t.ppf(0.975, 3) * d.std(ddof=1) / np.sqrt(4)
    assert diff.method == "paired t"
    assert diff.estimate == pytest.approx(d.mean())
    assert (diff.low, diff.high) == pytest.approx((d.mean() - half, d.mean() + half))
    # the shared seed-to-seed spread cancels: narrower than Welch on the same values
    welch = mean_difference(a, b)
    assert diff.high - diff.low < welch.high - welch.low


def test_paired_difference_rejects_unpaired_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=">= 2 pairs"):
        paired_difference([1.0], [0.5])
