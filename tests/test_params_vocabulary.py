"""``poisonlab.params``: the one vocabulary of parameter checks and its error format."""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pytest

from poisonlab.params import (
    BOOLEAN,
    CALLABLE,
    DEVICE,
    NON_EMPTY_STR,
    PATH,
    POSITIVE,
    SEED,
    UNIT,
    InstanceOf,
    Interval,
    Options,
    Satisfies,
    check_param,
    describe_value,
    validate_params,
    validated,
)


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        (Interval(Integral, 1, None, closed="left"), [1, 7, np.int64(3)], [0, 1.0, True, "2", None]),
        (
            Interval(Real, 0, 1, closed="right"),
            [1, 0.5, 1e-9, np.float32(0.25)],
            [0, 1.01, float("nan"), True],
        ),
        (Interval(Real, 0, 1, closed="neither"), [0.5], [0.0, 1.0]),
        (Interval(Real, 0, 1, closed="both"), [0, 1, 0.0, 1.0], [-0.0001, 1.0001]),
        (POSITIVE, [1e-12, 3], [0, -1, float("inf"), float("nan")]),
        (Options("add", "replace"), ["add", "replace"], ["Add", 1, None]),
        (Options(None, "L"), [None, "L"], ["RGB", 0]),
        (BOOLEAN, [True, False, np.bool_(True)], [0, 1, "yes", None]),
        (DEVICE, ["auto", "cpu", "cuda", "cuda:1"], ["gpu", "cuda:", "cuda:x", 0]),
        (CALLABLE, [len, lambda x: x], [None, 3]),
        (NON_EMPTY_STR, ["a"], ["", None, 1]),
        (PATH, ["a.png", Path("a.png")], [3, None]),
        (InstanceOf(np.ndarray, "an array"), [np.zeros(2)], [[1, 2]]),
    ],
)
def test_constraints_admit_and_refuse(constraint, good, bad):
    assert all(constraint.is_satisfied_by(v) for v in good)
    assert not any(constraint.is_satisfied_by(v) for v in bad)


@pytest.mark.parametrize(
    ("value", "allowed", "message"),
    [
        (0.0, [Interval(Real, 0, 1, closed="right")], "eps must be in (0, 1], got 0.0"),
        ("x", [Interval(Real, 0, 1, closed="right")], "eps must be a number in (0, 1], got 'x'"),
        (0, [None, Interval(Integral, 1, None, closed="left")], "eps must be an integer >= 1, got 0"),
        (
            "a",
            [None, Interval(Integral, 1, None, closed="left")],
            "eps must be None or an integer >= 1, got 'a'",
        ),
        (-1, [SEED], "eps must be an integer >= 0, got -1"),
        (0, [POSITIVE], "eps must be a positive number, got 0"),
        (2, [UNIT], "eps must be in [0, 1], got 2"),
        ("mode", [Options("a", "b")], "eps must be one of ['a', 'b'], got 'mode'"),
        (
            3,
            [None, Options("auto"), Satisfies(lambda v: False, "a pair")],
            "eps must be None, 'auto' or a pair, got 3",
        ),
        (
            np.zeros((2, 3), np.float32),
            [CALLABLE],
            "eps must be a callable, got float32 array of shape (2, 3)",
        ),
        (
            0.0,
            [Interval(Real, 0, 1, closed="right", note="pixel scale")],
            "eps must be in (0, 1] (pixel scale), got 0.0",
        ),
    ],
)
def test_one_message_format_names_param_expected_and_got(value, allowed, message):
    with pytest.raises(ValueError) as info:
        check_param("eps", value, *allowed)
    assert str(info.value) == message


def test_check_param_returns_the_value_unchanged():
    value = np.int64(3)
    assert check_param("n", value, SEED) is value


def test_describe_value_is_short_for_objects_and_arrays():
    class Model:
        def __repr__(self) -> str:
            return "Model(\n" + "layer\n" * 1000 + ")"

    assert describe_value(Model()) == "Model"
    assert describe_value(np.zeros((5, 5), np.uint8)) == "uint8 array of shape (5, 5)"
    assert describe_value(list(range(100))) == "list of length 100"
    assert describe_value(np.float64(0.5)) == "0.5"


def test_validate_params_checks_in_constraint_order_and_skips_unconstrained():
    constraints = {"a": [POSITIVE], "b": [BOOLEAN]}
    validate_params({"a": 1, "b": True, "c": object()}, constraints)
    with pytest.raises(ValueError, match="^a must be"):
        validate_params({"b": "x", "a": -1}, constraints)


def test_validated_checks_passed_arguments_and_exposes_constraints():
    @validated({"k": [Interval(Integral, 1, None, closed="left")], "flag": [BOOLEAN]})
    def f(x, k=1, *, flag=False):
        return x * k

    assert f(2, 3) == 6 and f(2, k=2, flag=True) == 4
    assert f.parameter_constraints["flag"] == [BOOLEAN] and f.__name__ == "f"
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        f(2, 0)
    with pytest.raises(ValueError, match="flag must be True or False, got 1"):
        f(2, flag=1)
    with pytest.raises(TypeError, match="unknown parameters"):
        validated({"nope": [BOOLEAN]})(lambda x: x)
