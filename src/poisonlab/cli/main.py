"""The ``poisonlab`` command.

Start-up cost: every command module is imported here, so each keeps its top level to typer, rich
and :mod:`poisonlab.cli` helpers, and imports torch, numpy, the defenses, the experiments and the
service inside its command functions. ``poisonlab --help``/``--version`` then start in a fraction
of a second instead of the ~2-4 s torch and scikit-learn took (BENCHMARKS.md, "CLI start-up");
tests/cli/test_startup.py checks the import mechanics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from poisonlab import __version__
from poisonlab.cli._app import App
from poisonlab.cli.bench_cmd import bench_app
from poisonlab.cli.clean_label_cmd import clean_label_command
from poisonlab.cli.craft_cmd import craft_command
from poisonlab.cli.experiments_cmd import demo_command, matrix_command, run_command
from poisonlab.cli.figures_cmd import figures_command
from poisonlab.cli.images import images_app
from poisonlab.cli.lab import evaluate_command, train_command
from poisonlab.cli.models_cmd import models_app
from poisonlab.cli.predict_cmd import predict_command
from poisonlab.cli.redteam_cmd import redteam_command
from poisonlab.cli.scan_cmd import defenses_app, scan_command
from poisonlab.cli.service_cmd import keys_app, serve_command, sources_app

if TYPE_CHECKING:
    from typer._click import exceptions as click_errors

app = App(name="poisonlab", help="Data poisoning attacks and defenses on image classifiers.")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("run")(run_command)
app.command("demo")(demo_command)
app.command("scan")(scan_command)
app.command("matrix")(matrix_command)
app.command("clean-label")(clean_label_command)
app.command("craft")(craft_command)
app.command("figures")(figures_command)
app.add_typer(images_app, name="images")
app.add_typer(models_app, name="models")
app.add_typer(defenses_app, name="defenses")
app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")
app.add_typer(sources_app, name="sources")
app.command("redteam")(redteam_command)
app.add_typer(bench_app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"poisonlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Data poisoning attacks and defenses on image classifiers."""


def main() -> None:
    """The console entry point: ``app`` with usage errors (a bad option value, an unknown option,
    a missing argument) as one ``error:`` line and exit code 2, like every other refused input;
    Click's own rendering is a multi-line box."""
    import sys

    # Typer (0.29, pinned in requirements.txt) runs on its own copy of Click: its exceptions, not click's
    from typer._click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()  # no arguments: the help, as before
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        sys.exit(_usage_line(exc))
    except click_errors.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: click_errors.UsageError) -> int:
    """Print ``error: <what is wrong> (see: poisonlab CMD --help)``; the exit code (2)."""
    where = exc.ctx.command_path if exc.ctx is not None else "poisonlab"
    message = " ".join(exc.format_message().split())
    typer.echo(f"error: {message} (see: {where} --help)", err=True)
    return exc.exit_code
