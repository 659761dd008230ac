"""Tables of ``docs/results/*.md`` regenerated from their raw JSON, and the check that they match.

A figure typed by hand into a results page can drift from the run it quotes; here every table
with a JSON source is produced by a function from that JSON, and :func:`missing_tables` tells
which generated tables a page does not hold verbatim (the test of ``docs/results`` runs it).

The matrix tables of ``defenses.md`` are built here (:func:`matrix_detection_table`,
:func:`matrix_mitigation_table`); the chapter table by :mod:`poisonlab.reporting.chapter_doc`;
the clean-label tables by :mod:`poisonlab.experiments.clean_label.report`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFENSE_ABBREVIATIONS",
    "load_json",
    "load_json_object",
    "markdown_table",
    "markdown_tables",
    "matrix_detection_table",
    "matrix_mitigation_table",
    "missing_tables",
    "write_page",
]

#: the short column names of the defense tables in ``defenses.md``
DEFENSE_ABBREVIATIONS = {
    "data_checks": "checks",
    "duplicates": "dups",
    "label_drift": "drift",
    "zscore": "z",
    "kmeans": "km",
    "dbscan": "dbscan",
    "isolation_forest": "iforest",
    "autoencoder": "AE",
    "activation_clustering": "AC",
    "spectral_signatures": "spectral",
    "confident_learning": "CL",
    "roni": "RONI",
    "provenance": "prov",
    "strip": "STRIP",
}


def load_json(path: str | Path) -> Any:
    """The JSON document at ``path`` (FileNotFoundError names it when it is missing)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"result file not found: {p}")
    return json.loads(p.read_text(encoding="utf-8"))


def load_json_object(path: str | Path, keys: Sequence[str] = ()) -> dict:
    """The JSON object at ``path`` holding every key of ``keys``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not JSON, not an object, or a key missing (the message names the file and the keys).
    """
    try:
        data = load_json(path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)}")
    return data


def write_page(out: str | Path, make: Callable[[], str]) -> int:
    """Write the page ``make()`` returns to ``out`` and print it: the body of every
    ``benchmarks/*_doc.py`` script. Returns the exit status: 0, or 2 with one ``error:`` line on
    stderr when the raw records are missing or malformed (nothing is written then)."""
    try:
        text = make()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text)
    return 0


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], align: Sequence[str] | None = None
) -> str:
    """A GitHub Markdown table; ``align`` per column ``"l"`` (``---``) or ``"r"`` (``---:``)."""
    marks = ["---:" if a == "r" else "---" for a in (align or ["l"] * len(header))]
    if len(marks) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError(f"every row needs {len(header)} cells (the header's)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


_TABLE_LINE = re.compile(r"^\|.*\|\s*$")


def markdown_tables(text: str) -> list[str]:
    """Every table of a Markdown text (runs of lines that start and end with ``|``), in order."""
    tables, current = [], []
    for line in text.splitlines():
        if _TABLE_LINE.match(line):
            current.append(line.rstrip())
        elif current:
            tables.append("\n".join(current))
            current = []
    if current:
        tables.append("\n".join(current))
    return tables


def missing_tables(doc: str, generated: Sequence[str]) -> list[str]:
    """The ``generated`` tables that ``doc`` does not hold verbatim (an empty list: all there)."""
    present = set(markdown_tables(doc))
    return [t for t in generated if t.strip() not in present]


def _pair(cell: Mapping[str, Any] | None) -> str:
    """``F1 / AUROC`` of a detection cell, two decimals (``n/a`` where undefined)."""
    cell = cell or {}
    return " / ".join("n/a" if cell.get(k) is None else f"{cell[k]:.2f}" for k in ("f1", "auroc"))


def _three(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def matrix_detection_table(matrix: Mapping[str, Any]) -> str:
    """The attacks x defenses table of ``defenses.md`` from a ``matrix.json``: poison count, the
    poisoned model's clean accuracy and attack success, then F1 / AUROC per defense."""
    defenses = [d for d in matrix["defenses"] if d != "screen"]
    header = ["attack", "poison", "clean acc", "attack success"]
    header += [DEFENSE_ABBREVIATIONS.get(d, d) for d in defenses]
    rows = [
        [
            r["name"],
            r["poison_count"],
            _three(r["poisoned"]["clean_accuracy"]),
            _three(r["poisoned"]["attack_success"]),
            *(_pair(r["detection"].get(d)) for d in defenses),
        ]
        for r in matrix["rows"]
    ]
    return markdown_table(header, rows, ["l", "r", "r", "r"] + ["r"] * len(defenses))


def matrix_mitigation_table(matrix: Mapping[str, Any]) -> str:
    """The mitigation table of ``defenses.md`` for a matrix that mitigated one cell per attack
    (``mitigation: best``): which detector, what it removed and left, and the retrained model.

    Raises
    ------
    ValueError
        A row with more than one mitigated cell besides the oracle (use the full report).
    """
    rows = []
    for r in matrix["rows"]:
        cells = {k: v for k, v in r["mitigation"].items() if k != "oracle"}
        if len(cells) != 1:
            raise ValueError(f"row {r['name']!r} has {len(cells)} mitigated cells; this table shows one")
        ((name, cell),) = cells.items()
        rows.append(
            [
                r["name"],
                _three(r["poisoned"]["attack_success"]),
                name,
                cell["removed"],
                cell["poison_left"],
                _three(cell["clean_accuracy"]),
                _three(cell["attack_success"]),
            ]
        )
    header = [
        "attack",
        "attack success, poisoned model",
        "mitigated by",
        "removed",
        "poison left",
        "clean acc after",
        "attack success after",
    ]
    return markdown_table(header, rows, ["l", "r", "l", "r", "r", "r", "r"])
