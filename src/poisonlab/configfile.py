"""Read the mapping a YAML or JSON config file holds, with one-line errors.

Every config loader (training configs, experiment, matrix and clean-label configs) reads its file
here, so that a folder given for a file, a file that is not UTF-8 text and a syntax error each
become one line naming the file and, for a syntax error, the line and column (PyYAML's own
message spans several lines and names ``<unicode string>`` instead of the file).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
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
        if path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, _DuplicateKey) as exc:
        raise ValueError(f"cannot parse {what} {path}: {_one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data


class _DuplicateKey(ValueError):
    """A JSON object that names one key twice."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook: a key given twice is an error, not the last one silently."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names one key twice (``yaml.safe_load`` keeps
    the last: a second ``training:`` block would silently replace the first)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports an unhashable key itself
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


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
