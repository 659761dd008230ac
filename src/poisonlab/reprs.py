"""Concise ``repr`` for result values: class, sizes, counts and a few fields, never the arrays.

The results poisonlab returns hold index sets, prediction arrays, models and training histories
of thousands of entries; the dataclass default ``repr`` prints all of them, so that
``print(result)`` in a notebook fills the screen. The classes define ``__repr__`` with
:func:`concise_repr` instead, which shows each chosen field through :func:`short`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["concise_repr", "short"]

#: longest string shown as is; longer ones are cut with an ellipsis
_MAX_TEXT = 120


def short(value: Any) -> str:
    """A short rendering of ``value`` (at most about 120 characters).

    Arrays become ``dtype[shape]``, sets, lists and dicts their length, floats 4 significant
    digits, long strings are cut, and objects without a concise ``repr`` (a model) their class
    name.

    Parameters
    ----------
    value : object
        Any value.

    Returns
    -------
    str
    """
    if value is None or isinstance(value, bool | int | np.bool_ | np.integer):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    if isinstance(value, str | os.PathLike):
        text = str(value)
        return repr(text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "...")
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, set | frozenset | list | tuple | Mapping):
        if len(value) <= 4 and all(isinstance(v, str | int | float) for v in value):
            text = repr(value)
            if len(text) <= _MAX_TEXT:
                return text
        return f"<{type(value).__name__} of {len(value)}>"
    if type(value).__repr__ is object.__repr__ or _is_torch_module(value):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 2 * _MAX_TEXT else type(value).__name__


def _is_torch_module(value: Any) -> bool:
    # a torch module's repr lists every layer; checked by name so this module never imports torch
    return any(
        c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(value).__mro__
    )


def concise_repr(obj: Any, **fields: Any) -> str:
    """``ClassName(key=short(value), ...)`` for the given fields, in order.

    Parameters
    ----------
    obj : object
        The value being represented (only its class name is used).
    **fields
        The fields to show and their values.

    Returns
    -------
    str
    """
    inner = ", ".join(f"{key}={short(value)}" for key, value in fields.items())
    return f"{type(obj).__name__}({inner})"
