"""CLI start-up: what ``poisonlab`` imports before a command runs, and the help it prints.

Start-up time itself is measured by benchmarks/cli_startup.py (BENCHMARKS.md); these tests
check the mechanics that keep it short: a fresh interpreter that imports the CLI, or renders
``--help``/``--version``, has not imported torch, numpy or the other heavy libraries.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from poisonlab.cli.main import app

runner = CliRunner()

#: libraries that must stay out of the CLI's start-up (seconds of import time between them);
#: pydantic is not among them: Typer 0.29 itself imports it to convert a subcommand's options
HEAVY = ("torch", "numpy", "scipy", "sklearn", "matplotlib", "fastapi", "uvicorn", "PIL", "safetensors")

_PROBE = """
import json, sys
sys.argv = ["poisonlab", *json.loads(sys.argv[1])]
import poisonlab.cli.main as cli
if len(sys.argv) > 1:
    try:
        cli.main()
    except SystemExit:
        pass
print("\\nMODULES " + json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def _heavy_imported(args: list[str]) -> list[str]:
    """The heavy modules a fresh interpreter holds after ``poisonlab ARGS`` (no args: the import)."""
    code = _PROBE.format(heavy=repr(set(HEAVY)))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    return json.loads(line.removeprefix("MODULES "))


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--version"],
        ["--help"],
        ["train", "--help"],
        ["scan", "--help"],
        ["craft", "--help"],
        ["run", "--help"],
        ["models", "list", "--help"],
    ],
    ids=lambda a: " ".join(a) or "import",
)
def test_start_up_imports_no_heavy_library(args: list[str]) -> None:
    assert _heavy_imported(args) == []


def test_the_threads_variable_named_in_the_help_is_the_librarys() -> None:
    from poisonlab.cli.options import THREADS_ENV_VAR
    from poisonlab.threads import ENV_VAR

    assert THREADS_ENV_VAR == ENV_VAR


def test_crafted_attack_names_in_the_help_match_the_registry() -> None:
    from poisonlab.attacks import ATTACKS
    from poisonlab.cli.craft_cmd import CRAFT_TAKERS, CRAFTED_ATTACKS

    assert tuple(ATTACKS.where(crafted=True)) == CRAFTED_ATTACKS
    for flag, names in CRAFT_TAKERS.items():
        assert names == tuple(ATTACKS.where(crafted=True, **{flag: True})), flag


# ------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize(
    ("args", "flags"),
    [
        ([], ["--version", "--help"]),
        (["train"], ["--quiet", "--help"]),
        (["scan"], ["--screen", "--json"]),
        (["run"], ["--save-data", "--quiet"]),
        (["models", "list"], ["--json"]),
    ],
)
def test_flags_show_no_value_type(args: list[str], flags: list[str]) -> None:
    """Typer's rich help printed ``<bool>`` beside every flag, as if it took a value."""
    result = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    for flag in flags:
        assert flag in result.output
    if args == ["train"]:  # options that take a value keep their type
        assert "<path>" in result.output and "<int range>" in result.output


def test_version_does_not_build_anything_heavy() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("poisonlab ")
