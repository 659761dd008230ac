"""Locations of the trigger images shipped in ``poisonlab/assets``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: Names of the shipped trigger images (``poisonlab/assets/<name>.png``).
SHIPPED_TRIGGERS = ("alert", "htbd")


def default_trigger_path(name: str = "alert") -> Path:
    """Return the path of a trigger image shipped with poisonlab.

    Parameters
    ----------
    name : {"alert", "htbd"}
        ``"alert"``: a 64x64 RGBA warning triangle with an exclamation mark on a transparent
        background; ``"htbd"``: a 32x32 RGB high-contrast random-checker patch.  Both are drawn by
        :mod:`poisonlab.triggers.assets`.

    Returns
    -------
    pathlib.Path
        The file inside the installed package, found with :mod:`importlib.resources`.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in SHIPPED_TRIGGERS:
        raise ValueError(f"unknown shipped trigger {name!r}; expected one of {list(SHIPPED_TRIGGERS)}")
    return Path(str(files("poisonlab").joinpath("assets", f"{name}.png")))
