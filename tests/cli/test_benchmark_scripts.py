"""The result scripts under benchmarks/ call the CLI with options it has (they run for hours:
a misspelt flag would only show when the script reaches that line)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from poisonlab.cli.main import app

SCRIPTS = sorted((Path(__file__).parents[2] / "benchmarks").glob("*.sh"))


def _cli_calls(script: Path) -> list[list[str]]:
    """Every ``.venv/bin/poisonlab ...`` command of ``script``, continuation lines joined, comments cut."""
    text = script.read_text(encoding="utf-8").replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith(".venv/bin/poisonlab "):
            calls.append(shlex.split(line)[1:])
    return calls


def _options(subcommand: str) -> set[str]:
    group = typer.main.get_command(app)
    command = group.commands[subcommand]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}


def test_the_chapter_script_calls_the_cli():
    assert {call[0] for call in _cli_calls(Path(__file__).parents[2] / "benchmarks" / "run_chapter.sh")} >= {
        "run",
        "figures",
        "clean-label",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_option_a_script_passes_exists(script: Path):
    for call in _cli_calls(script):
        known = _options(call[0])
        used = {token for token in call[1:] if re.fullmatch(r"--[a-z][a-z-]*", token)}
        assert used <= known, (script.name, call[0], sorted(used - known))
