"""Class labels as people write them: the one strict parser every label that comes in goes through.

A label is either a class name, spelled exactly as the dataset spells it, or a class index written
with the ASCII digits 0-9 (or given as an integer). Python's ``int()`` and ``str.isdigit`` accept
much more: other scripts' digits ("٣", Arabic-Indic three; "３", full-width three; "³"), signs,
surrounding spaces and underscores ("+3", " 3", "0_3"). A label that a reviewer reads as one thing
must not name another class, so none of these is a label here.

:func:`resolve_label` is used by the image and array loaders, :meth:`Dataset.class_index
<poisonlab.data.dataset.Dataset.class_index>` and the ImRecS contributions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# fullmatch: "$" would also match before a trailing newline
_ASCII_INDEX = re.compile(r"[0-9]+")
# more digits than any class count needs; int() of longer strings is refused above 4,300 digits
_MAX_INDEX_DIGITS = 18
_LISTED_NAMES = 20


def is_ascii_index(text: str) -> bool:
    """Whether ``text`` is a class index in ASCII decimal digits (``"3"``, ``"007"``; not ``"٣"``)."""
    return isinstance(text, str) and _ASCII_INDEX.fullmatch(text) is not None


def describe_classes(class_names: Sequence[str]) -> str:
    """The valid labels in words, for error messages (long class lists are shortened)."""
    names = [str(c) for c in class_names]
    shown = repr(names)
    if len(names) > _LISTED_NAMES:
        shown = f"{repr(names[:_LISTED_NAMES])[:-1]}, ... ({len(names)} classes)]"
    return f"one of {shown} or an index 0-{len(names) - 1} in ASCII digits"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def resolve_label(label: object, class_names: Sequence[str], *, what: str = "label") -> int:
    """Class index of ``label``: an exact class name, an index (int), or an index in ASCII digits.

    A class *named* like an index wins (``"3"`` is the class named "3" when there is one).

    Parameters
    ----------
    label : str or int
        As the user wrote it; not stripped (callers strip form fields themselves).
    class_names : sequence of str
        The classes, in index order (at least one).
    what : str
        The word the messages use for the value (``"label"``; ``"class"`` for
        :meth:`~poisonlab.data.dataset.Dataset.class_index`).

    Returns
    -------
    int
        In ``[0, len(class_names) - 1]``.

    Raises
    ------
    ValueError
        An unknown name, a string that is not ASCII decimal digits, an index out of range, or a
        value that is neither a string nor an integer (booleans and floats included). The message
        lists the valid class names.
    """
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError(f"no class names to resolve the {what} {_short(label)} against")
    if isinstance(label, bool | np.bool_) or not isinstance(label, str | int | np.integer):
        raise ValueError(
            f"a {what} must be a class name (str) or index (int), got {type(label).__name__} "
            f"{_short(label)}; expected {describe_classes(names)}"
        )
    if isinstance(label, str):
        if label in names:
            return names.index(label)
        if not is_ascii_index(label):
            raise ValueError(f"unknown {what} {_short(label)}; expected {describe_classes(names)}")
        digits = label.lstrip("0") or "0"  # int() counts leading zeros against its digit limit
        if len(digits) > _MAX_INDEX_DIGITS:
            raise ValueError(
                f"{what} index {_short(label)} out of range [0, {len(names) - 1}]; "
                f"expected {describe_classes(names)}"
            )
        label = digits
    idx = int(label)
    if not 0 <= idx < len(names):
        raise ValueError(
            f"{what} index {idx} out of range [0, {len(names) - 1}]; expected {describe_classes(names)}"
        )
    return idx
