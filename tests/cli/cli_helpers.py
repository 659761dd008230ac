"""Assertions the CLI tests share (imported as ``from cli_helpers import ...``)."""

from __future__ import annotations

import re

#: a 1-epoch digits training run, quiet (seconds)
TRAIN_1 = ["train", "--dataset", "digits", "--epochs", "1", "--quiet"]


def flat(text: str) -> str:
    """Output with rich's line wrapping undone (whitespace runs -> one space)."""
    return " ".join(text.split())


def assert_cli_error(result, match: str | None = None) -> str:
    """Exit code 2, exactly one ``error:`` line on stderr, no traceback; returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    if match is not None:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]
