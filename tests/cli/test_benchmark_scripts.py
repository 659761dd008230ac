"""The result scripts under benchmarks/ call the CLI with options it has (they run for hours:
a misspelt flag would only show when the script reaches that line), and BENCHMARKS.md's recipe
table is what benchmarks/recipe_table.py makes of its records."""

from __future__ import annotations

import importlib.util
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
    script = Path(__file__).parents[2] / "benchmarks" / "run_chapter.sh"
    assert {call[0] for call in _cli_calls(script)} >= {"run", "figures"}
    # feature collision at the chapter's settings is a clean-label run: that script runs it
    assert "ONLY=feature-collision-chapter bash benchmarks/run_clean_label.sh" in script.read_text()
    assert {call[0] for call in _cli_calls(script.with_name("run_clean_label.sh"))} == {"clean-label"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_option_a_script_passes_exists(script: Path):
    for call in _cli_calls(script):
        known = _options(call[0])
        used = {token for token in call[1:] if re.fullmatch(r"--[a-z][a-z-]*", token)}
        assert used <= known, (script.name, call[0], sorted(used - known))


def _recipe_table_module():
    path = Path(__file__).parents[2] / "benchmarks" / "recipe_table.py"
    spec = importlib.util.spec_from_file_location("recipe_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_benchmarks_md_holds_the_recipe_table_its_records_give():
    root = Path(__file__).parents[2]
    generated = _recipe_table_module().table(root / "benchmarks" / "results" / "recipe_selection")
    assert generated in (root / "BENCHMARKS.md").read_text(encoding="utf-8"), (
        "BENCHMARKS.md's recipe-selection table differs from its records: run "
        "python benchmarks/recipe_table.py and paste its output"
    )


def test_the_recipe_table_refuses_an_empty_folder(tmp_path: Path):
    with pytest.raises(ValueError, match="no recipe records"):
        _recipe_table_module().table(tmp_path)
