"""The parameters a defense takes through ``--method NAME:key=value``, read from its constructor.

``poisonlab defenses list`` shows them and ``poisonlab scan`` checks ``--method`` against them
before loading anything, so a misspelt key is one line naming the valid keys instead of Python's
``__init__() got an unexpected keyword argument``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class DefenseParam:
    """One constructor parameter: its name, its annotation as written, its default."""

    name: str
    type: str
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """``name: type = default`` (``name: type (required)`` without a default)."""
        text = f"{self.name}: {self.type}" if self.type else self.name
        return f"{text} (required)" if self.required else f"{text} = {self.default!r}"


def defense_parameters(name: str) -> list[DefenseParam]:
    """The keyword parameters of defense ``name``'s constructor, in order.

    Raises
    ------
    ValueError
        ``name`` is not a registered defense (the message lists the registered ones).
    """
    from poisonlab.defenses import DEFENSES

    cls = DEFENSES.lookup(name)
    params = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = "" if p.annotation is _REQUIRED else p.annotation
        type_text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        params.append(DefenseParam(p.name, type_text, p.default))
    return params


def check_methods(methods: list[str] | None) -> None:
    """Check each ``--method NAME[:key=value,...]`` against the defense's parameters.

    Raises
    ------
    ValueError
        One line: an unknown defense (from the library's parser), or the unknown keys with the
        valid parameter names of that defense.
    """
    from poisonlab.defenses.scan import parse_method

    for text in methods or []:
        name, given = parse_method(text)
        valid = [p.name for p in defense_parameters(name)]
        unknown = [key for key in given if key not in valid]
        if unknown:
            raise ValueError(
                f"--method {text}: unknown parameter {', '.join(map(repr, unknown))} for defense "
                f"{name!r}; valid parameters: {', '.join(valid) or '(none)'} "
                "(see poisonlab defenses list)"
            )
