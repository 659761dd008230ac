"""Shared CLI error handling: expected failures become one ``error: ...`` line and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a Typer command so ``ValueError``/``OSError`` print ``error: <message>`` and exit 2.

    Place it under the ``@app.command()`` decorator; :func:`functools.wraps` keeps the signature
    Typer reads the options from. Other exceptions (bugs) still show a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError) as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: a pydantic ``ValidationError`` as ``field: problem``
    pairs (its own text spans lines and ends in a documentation link), anything else with its
    line breaks folded, so that an unexpected multi-line message still keeps the contract."""
    from pydantic import ValidationError

    from poisonlab.error_text import field_problems, fold_lines

    if isinstance(exc, ValidationError):
        return f"invalid {exc.title}: {field_problems(exc.errors())}"
    return fold_lines(str(exc))
