"""One line of text for errors whose own text spans several: pydantic's and any multi-line message.

Every edge that shows an error to a person (the CLI's ``error: ...`` line, a config loader's
``ValueError``, ``serve``'s option errors, the service's 422 body) keeps the one-line contract.
A pydantic ``ValidationError`` prints one block per problem and ends in a documentation link;
:func:`field_problems` turns its ``errors()`` into ``field: problem`` pairs instead, so that the
four edges word a bad field the same way and differ only in how they name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["field_problems", "fold_lines"]

#: problems named in one message; a config with more shows its first five
MAX_PROBLEMS = 5


def field_problems(
    errors: Iterable[Mapping[str, Any]],
    *,
    rename: Mapping[str, str] | None = None,
    skip: Iterable[str] = (),
    empty: str = "value",
) -> str:
    """``loc: msg, got VALUE; loc: msg`` for the first five of pydantic's error dicts.

    Parameters
    ----------
    errors : iterable of mapping
        ``ValidationError.errors()`` (or FastAPI's ``RequestValidationError.errors()``): each
        with ``loc`` (a tuple of field names and indices) and ``msg``.
    rename : mapping of str to str, optional
        Names shown instead of a location's first part (``{"db_url": "--db"}``: the option a
        person typed, not the field it fills).
    skip : iterable of str
        Location parts left out (``"body"``, which FastAPI puts before every request field).
    empty : str
        The name shown for an error with no location left (the value as a whole).

    Returns
    -------
    str
        One line; ``""`` when there are no errors.
    """
    rename, skip = dict(rename or {}), set(skip)
    items = []
    for err in list(errors)[:MAX_PROBLEMS]:
        parts = [str(p) for p in err.get("loc", ()) if str(p) not in skip]
        if parts:
            parts[0] = rename.get(parts[0], parts[0])
        message = fold_lines(str(err.get("msg", "invalid")))
        if err.get("type") == "value_error":  # our validators' own words, without pydantic's prefix
            message = message.removeprefix("Value error, ")
        received = "" if ", got " in message else _received(err)  # a validator that said it itself
        items.append(f"{'.'.join(parts) or empty}: {message}{received}")
    return "; ".join(items)


def _received(err: Mapping[str, Any]) -> str:
    """``, got 'abc'`` when the error carries the scalar it refused (a missing field carries the
    whole object around it, which is left out); long values cut to 40 characters."""
    if "input" not in err or err.get("type") == "missing":
        return ""
    value = err["input"]
    if not isinstance(value, str | int | float | bool) and value is not None:
        return ""
    text = repr(value)
    return f", got {text[:40]}{'...' if len(text) > 40 else ''}"


def fold_lines(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) as one space, stripped."""
    return " ".join(text.split())
