"""The shared formatters of the results pages (:mod:`poisonlab.reporting.prose`) on constructed
values: empty and one-item inputs, 0 of n, rounding at .5, negative spans, each page's variant."""

from __future__ import annotations

from poisonlab.reporting.prose import (
    and_list,
    diff_points,
    duration,
    k_of_n,
    num,
    para,
    pct,
    pct_interval,
    points,
    rate_cell,
    rate_pct,
    span,
    wilson_pct,
)
from poisonlab.reporting.stats import Difference, RateInterval, rate_interval


def test_para_joins_strips_and_wraps_at_100() -> None:
    assert para() == "" and para("", "  ") == ""
    assert para("  a ", "", "b\n") == "a b"
    lines = para(*["word"] * 60).splitlines()
    assert max(map(len, lines)) <= 100 and len(lines) == 3
    assert para("x" * 120, "y") == "x" * 120 + "\ny"  # a long word (a link, a code span) is not broken


def test_para_keeps_a_number_with_its_percent_unless_told() -> None:
    assert para("x" * 96, "10 %") == "x" * 96 + "\n10 %"
    assert para("x" * 96, "10 %", keep_percent=False) == "x" * 96 + " 10\n%"
    assert "\u00a0" not in para("x" * 96, "10 %")  # the glue is a plain space again on the page


def test_para_first_line_and_continuation_indents() -> None:
    item = para("- a", "b " * 60, indent="  ").splitlines()
    assert item[0].startswith("- a b") and all(line.startswith("  b") for line in item[1:])
    numbered = para("c " * 60, first="1. ", indent="   ").splitlines()
    assert numbered[0].startswith("1. c") and numbered[1].startswith("   c")
    quote = para(*("well-known " * 20).split(), first="> ", indent="> ", width=30, hyphens=True)
    assert all(line.startswith("> ") for line in quote.splitlines())
    assert any(line.endswith("well-") for line in quote.splitlines())  # broke at a hyphen
    no_break = para(*("well-known " * 20).split(), width=30)
    assert not any(line.endswith("-") for line in no_break.splitlines())


def test_pct_shortest_fixed_and_table_forms() -> None:
    assert pct(0.005) == "0.5 %" and pct(0.1) == "10 %" and pct(0.0) == "0 %"
    assert pct(0.0037, 2) == "0.37 %" and pct(0.25, 0) == "25 %"
    assert pct(0.125, 1, sep="") == "12.5%" and pct(None) == "-" and pct(None, 1, sep="") == "-"
    # .5 rounds half to even, as format() does on an exactly representable value
    assert pct(0.125, 0) == "12 %" and pct(0.375, 0) == "38 %"


def test_pct_interval_prints_both_ends() -> None:
    assert pct_interval(0.0017, 0.0082) == "0.17-0.82 %"
    assert pct_interval(0.72, 1.0, 0) == "72-100 %"
    assert pct_interval(1.0, 1.0, 0) == "100-100 %"  # no collapsing, unlike span
    assert pct_interval(0.0, 0.0) == "0.00-0.00 %"


def test_wilson_and_rate_texts() -> None:
    r = rate_interval(3, 400)
    interval = f"{100 * r.low:.2f}-{100 * r.high:.2f} %"
    assert wilson_pct(3, 400) == f"Wilson 95 %: {interval}"
    assert rate_pct(3, 400) == f"0.75 %, Wilson 95 %: {interval}"
    assert rate_pct(0, 10).startswith("0.00 %, Wilson 95 %: 0.00-27.75 %")  # 0 of n has an interval
    assert rate_pct(0, 0) == "-" and rate_pct(0, 0, empty="none sent") == "none sent"
    assert wilson_pct(1, 2, 0) == "Wilson 95 %: 9-91 %"


def test_rate_cell() -> None:
    assert rate_cell(rate_interval(0, 0)) == "-"
    r = rate_interval(57, 60)
    assert rate_cell(r) == f"57/60 = 0.95 [{r.low:.2f}, {r.high:.2f}]"
    assert rate_cell(RateInterval(1234, 5000, 0.2, 0.3), 3) == "1,234/5,000 = 0.247 [0.200, 0.300]"
    assert rate_cell(RateInterval(0, 4, 0.0, 0.49)) == "0/4 = 0.00 [0.00, 0.49]"


def test_num() -> None:
    assert num(None) == "-" and num(None, missing="n/a") == "n/a"
    assert num(0.5) == "0.50" and num(2, 3) == "2.000" and num(0.1234, 3, signed=True) == "+0.123"
    assert num(-0.25, 1) == "-0.2" and num(0.125) == "0.12"  # half to even
    assert num(0.0, 3, signed=True) == "+0.000"


def test_span() -> None:
    assert span([]) == "-" and span(iter([])) == "-"
    assert span([0.5]) == "0.50" and span([1.0, 1.0]) == "1.00"
    assert span([0.5, 0.25]) == "0.25-0.50"  # order does not matter
    assert span([0.121, 0.124]) == "0.12"  # both ends print alike: one figure
    assert span([10, 2, 7], 0) == "2-10" and span((x for x in [0.3, 0.1]), 1) == "0.1-0.3"


def test_span_signed_and_other_specs() -> None:
    assert span([-0.8, 0.3], 1, signed=True) == "-0.8 to +0.3"
    assert span([-2.0, -0.5], 1, signed=True) == "-2.0 to -0.5"
    assert span([0.3, 0.3], 1, signed=True) == "+0.3"
    assert span([1709.0, 0.6], spec=",.1f") == "0.6-1,709.0"
    assert span([12, 9, 12], spec="") == "9-12" and span([0.25, 0.5], spec="") == "0.25-0.5"
    assert span([0.3], spec=".2f") == "0.30"


def test_points_and_differences() -> None:
    assert points(-0.038) == "-3.8 points" and points(0.0) == "+0.0 points"
    assert points(0.5, 0) == "+50 points" and points(-0.00125, 2) == "-0.12 points"
    d = Difference(estimate=-0.514, low=-0.666, high=-0.333, method="newcombe")
    assert diff_points(d) == "-51.4 points [-66.6, -33.3]"
    assert diff_points(Difference(0.0, -0.1, 0.1, "newcombe"), 0) == "+0 points [-10, +10]"


def test_and_list() -> None:
    assert and_list([]) == "none" and and_list([], empty="no setting") == "no setting"
    assert and_list(["a"]) == "a" and and_list(["a", "b"]) == "a and b"
    assert and_list(["a", "b", "c"]) == "a, b and c"
    assert and_list(x.upper() for x in "xyz") == "X, Y and Z"  # any iterable, consumed once


def test_k_of_n() -> None:
    assert k_of_n(5, 5) == "all 5" and k_of_n(3, 5) == "3 of the 5" and k_of_n(0, 5) == "none of the 5"
    assert k_of_n(2, 2) == "both" and k_of_n(1, 2) == "1 of the 2" and k_of_n(0, 2) == "neither of the 2"
    assert k_of_n(0, 0) == "all 0"


def test_duration() -> None:
    assert duration(0) == "0 s" and duration(42) == "42 s" and duration(59.4) == "59 s"
    assert duration(59.6) == "1 min 0 s" and duration(60) == "1 min 0 s"
    assert duration(1421.2) == "23 min 41 s" and duration(3600) == "60 min 0 s"
    assert duration(0.5) == "0 s" and duration(1.5) == "2 s"  # round() halves to even
