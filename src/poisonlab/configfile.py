"""Read the mapping a YAML or JSON config file holds, with one-line errors.

Every config loader (training configs, experiment, matrix and clean-label configs) reads its file
here, so that a folder given for a file, a file that is not UTF-8 text and a syntax error each
become one line naming the file and, for a syntax error, the line and column (PyYAML's own
message spans several lines and names ``<unicode string>`` instead of the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_mapping_file"]


def read_mapping_file(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping stored in ``path`` (``.json`` as JSON, anything else as YAML).

    Parameters
    ----------
    path : str or Path
        The config file.
    what : str
        The kind of config, named in error messages (``"training config"``).

    Returns
    -------
    dict
        The raw mapping, not validated.

    Raises
    ------
    FileNotFoundError
        No such file, or a folder at that path.
    ValueError
        Not UTF-8 text, a syntax error, or a document that is not a mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse {what} {path}: {_one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data


def _one_line(exc: Exception) -> str:
    """What went wrong and where, on one line."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
