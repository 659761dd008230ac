"""The Typer application class every ``poisonlab`` command group is built from.

Why a subclass: Typer 0.29's rich help prints a type for every option, flags included, so each
on/off flag (``--quiet``, ``--help``, ``--screen``) showed a ``<bool>`` metavar as if it took a
value. :class:`PoisonlabCommand` and :class:`PoisonlabGroup` blank the type column of flags while
the help is rendered (and only then: parsing and error messages keep Typer's behaviour).
:class:`App` makes them the default of every command registered on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption


@contextmanager
def _flags_without_type(params: list[Any]) -> Iterator[None]:
    """Give every flag an empty metavar for the duration of the block (rich prints it as the type)."""
    flags = [p for p in params if isinstance(p, TyperOption) and p.is_flag and p.metavar is None]
    for p in flags:
        p.metavar = ""
    try:
        yield
    finally:
        for p in flags:
            p.metavar = None


class PoisonlabCommand(TyperCommand):
    """A command whose help shows flags without a value type."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _flags_without_type(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class PoisonlabGroup(TyperGroup):
    """A command group whose help shows flags (``--version``, ``--help``) without a value type."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _flags_without_type(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class App(typer.Typer):
    """``typer.Typer`` with :class:`PoisonlabGroup` and :class:`PoisonlabCommand` as defaults."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PoisonlabGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", PoisonlabCommand)
        return super().command(*args, **kwargs)
