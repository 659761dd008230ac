"""One vocabulary for checking parameters: declarative constraints and one error format.

Attacks, triggers and defenses declare what each parameter accepts instead of writing the check
by hand, in the spirit of scikit-learn's ``_parameter_constraints``::

    from numbers import Integral, Real
    from poisonlab.params import BOOLEAN, DEVICE, Interval, Options, validate_params

    constraints = {
        "eps": [None, Interval(Real, 0, 1, closed="right")],   # None or a number in (0, 1]
        "steps": [Interval(Integral, 1, None, closed="left")],  # an integer >= 1
        "mode": [Options("add", "replace")],
        "augment": [BOOLEAN],
        "device": [DEVICE],
    }
    validate_params({"eps": 0.0, "steps": 3}, constraints)
    # ValueError: eps must be in (0, 1], got 0.0

A parameter is valid when it satisfies at least one of its constraints; ``None`` in a list
admits ``None``. Every failure reads ``"<param> must be <expected>, got <value>"``, so a message
names the parameter, what it accepts and what it got, whoever raised it. When the value has the
right kind but misses the range, ``<expected>`` names the range only (``"in (0, 1]"``), which is
the part the caller got wrong.

:func:`validated` attaches constraints to a function (the triggers use it) and checks its
arguments on every call; :func:`check_param` checks one value.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "BOOLEAN",
    "CALLABLE",
    "DEVICE",
    "DEVICES",
    "NON_EMPTY_STR",
    "NON_NEGATIVE_INT",
    "PATH",
    "POSITIVE",
    "POSITIVE_INT",
    "SEED",
    "UNIT",
    "Constraint",
    "InstanceOf",
    "Interval",
    "Options",
    "Satisfies",
    "check_param",
    "describe_value",
    "validate_params",
    "validated",
]

F = TypeVar("F", bound=Callable[..., Any])
_CLOSED = {"both": ("[", "]"), "left": ("[", ")"), "right": ("(", "]"), "neither": ("(", ")")}


class Constraint:
    """A set of admissible values with a noun phrase for error messages (``"an integer >= 1"``)."""

    def is_satisfied_by(self, value: object) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def describe_miss(self, value: object) -> str | None:
        """A narrower phrase when ``value`` has the right kind but is refused, else ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class Interval(Constraint):
    """Integers or finite real numbers between two bounds.

    Parameters
    ----------
    kind : numbers.Integral or numbers.Real
        ``Integral`` refuses floats (``2.0`` is not an integer); ``Real`` accepts ints and floats
        but not NaN or infinities. Booleans are refused by both.
    left, right : number or None
        Bounds; ``None`` leaves that side open to infinity.
    closed : {"both", "left", "right", "neither"}
        Which bounds belong to the interval.
    note : str
        Appended to the description in parentheses, e.g. the unit (``"pixel scale, e.g. 16/255"``).
    """

    def __init__(
        self,
        kind: type,
        left: float | None = None,
        right: float | None = None,
        *,
        closed: str = "both",
        note: str = "",
    ) -> None:
        if kind not in (Integral, Real):
            raise TypeError(f"kind must be numbers.Integral or numbers.Real, got {kind!r}")
        if closed not in _CLOSED:
            raise TypeError(f"closed must be one of {list(_CLOSED)}, got {closed!r}")
        self.kind, self.left, self.right, self.closed, self.note = kind, left, right, closed, note

    def _right_kind(self, value: object) -> bool:
        if isinstance(value, bool | np.bool_) or not isinstance(value, self.kind):
            return False
        return self.kind is Integral or math.isfinite(float(value))  # type: ignore[arg-type]

    def _in_range(self, value: float) -> bool:
        closed_left = self.closed in ("both", "left")
        closed_right = self.closed in ("both", "right")
        if self.left is not None and not (value >= self.left if closed_left else value > self.left):
            return False
        return self.right is None or (value <= self.right if closed_right else value < self.right)

    def is_satisfied_by(self, value: object) -> bool:
        return self._right_kind(value) and self._in_range(value)  # type: ignore[arg-type]

    def _range(self) -> str:
        """``"in [0, 1)"``, ``">= 1"``, ``"< 5"`` or ``""`` for the whole line."""
        opening, closing = _CLOSED[self.closed]
        if self.left is not None and self.right is not None:
            return f"in {opening}{self.left}, {self.right}{closing}"
        if self.left is not None:
            return f"{'>=' if opening == '[' else '>'} {self.left}"
        if self.right is not None:
            return f"{'<=' if closing == ']' else '<'} {self.right}"
        return ""

    def _noted(self, text: str) -> str:
        return f"{text} ({self.note})" if self.note else text

    def describe(self) -> str:
        if self.kind is Integral:
            return self._noted(f"an integer {self._range()}".rstrip())
        if self.left == 0 and self.right is None:  # the common cases get their usual names
            positive = self.closed in ("right", "neither")
            return self._noted("a positive number" if positive else "a non-negative number")
        return self._noted(f"a number {self._range()}" if self._range() else "a finite number")

    def describe_miss(self, value: object) -> str | None:
        if not self._right_kind(value):
            return None
        if self.kind is Real and self.left is not None and self.right is not None:
            return self._noted(self._range())
        return self.describe()


def _same_option(value: object, option: object) -> bool:
    if value is option:
        return True
    if isinstance(value, bool | np.bool_) != isinstance(option, bool | np.bool_):
        return False  # True == 1 in Python, but a flag is not a count
    return isinstance(value, type(option)) and value == option


class Options(Constraint):
    """One of a fixed set of values (``True`` is not ``1``; a ``str`` subclass matches its text)."""

    def __init__(self, *values: object) -> None:
        if not values:
            raise TypeError("Options needs at least one value")
        self.values = values

    def is_satisfied_by(self, value: object) -> bool:
        return any(_same_option(value, v) for v in self.values)

    def describe(self) -> str:
        return repr(self.values[0]) if len(self.values) == 1 else f"one of {list(self.values)}"


class InstanceOf(Constraint):
    """An instance of a type (or of one of several types)."""

    def __init__(self, types: type | tuple[type, ...], description: str | None = None) -> None:
        self.types = types
        names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
        self.description = description or f"an instance of {' or '.join(names)}"

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.description


class Satisfies(Constraint):
    """Any value for which ``predicate(value)`` is true; ``description`` says which those are."""

    def __init__(self, predicate: Callable[[Any], bool], description: str) -> None:
        self.predicate, self.description = predicate, description

    def is_satisfied_by(self, value: object) -> bool:
        return bool(self.predicate(value))

    def describe(self) -> str:
        return self.description


class _Boolean(Constraint):
    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        return "True or False"


#: accepted device names; ``"cuda:<n>"`` picks one GPU
DEVICES = ("auto", "cpu", "cuda")


class _Device(Constraint):
    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, str) and (value in DEVICES or re.fullmatch(r"cuda:\d+", value) is not None)

    def describe(self) -> str:
        return f"one of {list(DEVICES)} (or 'cuda:<n>')"


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: object) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


BOOLEAN = _Boolean()
DEVICE = _Device()
CALLABLE = Satisfies(callable, "a callable")
NON_EMPTY_STR = Satisfies(lambda v: isinstance(v, str) and v != "", "a non-empty string")
PATH = InstanceOf((str, os.PathLike), "a path (str or os.PathLike)")
POSITIVE = Interval(Real, 0, None, closed="neither")
POSITIVE_INT = Interval(Integral, 1, None, closed="left")
NON_NEGATIVE_INT = Interval(Integral, 0, None, closed="left")
SEED = NON_NEGATIVE_INT
UNIT = Interval(Real, 0, 1, closed="both")


def _as_constraint(item: Constraint | None) -> Constraint:
    if item is None:
        return _NoneConstraint()
    if not isinstance(item, Constraint):
        raise TypeError(f"a constraint must be a Constraint or None, got {item!r}")
    return item


def describe_value(value: object) -> str:
    """A short description of ``value`` for error messages (never a 100-line array or model repr)."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return repr(value.item())
    scalar = (bool, int, float, str, bytes, os.PathLike)
    if value is not None and not isinstance(value, (*scalar, list, tuple, dict, set, frozenset, range)):
        return type(value).__name__  # a model or other object: its repr could be pages long
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} of length {len(value)}"  # type: ignore[arg-type]


def _expected(value: object, constraints: Sequence[Constraint]) -> str:
    """What ``value`` should have been: the narrow miss of a constraint of its kind, else all of them."""
    for c in constraints:
        miss = c.describe_miss(value)
        if miss is not None:
            return miss
    phrases = [c.describe() for c in constraints]
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} or {phrases[-1]}"


def _check(name: str, value: object, constraints: Sequence[Constraint]) -> Any:
    for c in constraints:
        if c.is_satisfied_by(value):
            return value
    raise ValueError(f"{name} must be {_expected(value, constraints)}, got {describe_value(value)}")


def _compile(
    constraints: Mapping[str, Sequence[Constraint | None]],
) -> dict[str, tuple[Constraint, ...]]:
    return {name: tuple(_as_constraint(c) for c in allowed) for name, allowed in constraints.items()}


def check_param(name: str, value: object, *allowed: Constraint | None) -> Any:
    """Return ``value`` if it satisfies one of ``allowed``; else raise a ValueError naming ``name``.

    Parameters
    ----------
    name : str
        The parameter as the caller knows it (``"eps"``, ``"weights['blank']"``).
    value : object
        The value to check.
    *allowed : Constraint or None
        The admissible values; ``None`` admits ``None``.

    Raises
    ------
    ValueError
        ``"<name> must be <expected>, got <value>"``.
    """
    return _check(name, value, [_as_constraint(c) for c in allowed])


def validate_params(
    values: Mapping[str, object], constraints: Mapping[str, Sequence[Constraint | None]]
) -> None:
    """Check every value in ``values`` that has constraints, in the order of ``constraints``.

    Parameters without constraints are not checked (cross-parameter rules are the caller's).

    Raises
    ------
    ValueError
        For the first parameter whose value satisfies none of its constraints.
    """
    for name, allowed in constraints.items():
        if name in values:
            check_param(name, values[name], *allowed)


def validated(constraints: Mapping[str, Sequence[Constraint | None]]) -> Callable[[F], F]:
    """Decorator: check the arguments a function is called with against ``constraints``.

    Only arguments the caller passes are checked (defaults are trusted). The constraints stay
    readable as ``fn.parameter_constraints``, so a registry can check overrides before the call.
    """

    def decorate(fn: F) -> F:
        parameters = inspect.signature(fn).parameters
        unknown = set(constraints) - set(parameters)
        if unknown:
            raise TypeError(f"constraints for unknown parameters of {fn.__name__}: {sorted(unknown)}")
        compiled = _compile(constraints)
        # Matching arguments to names by hand: Signature.bind would cost more than some triggers.
        positional = [
            name for name, p in parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for name, value in (*zip(positional, args, strict=False), *kwargs.items()):
                allowed = compiled.get(name)
                if allowed is not None:
                    _check(name, value, allowed)
            return fn(*args, **kwargs)

        wrapper.parameter_constraints = constraints  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
