"""Options shared by several commands, declared once so that their names and help agree.

A Typer option object only describes the option, so one object can sit in many signatures.
"""

from __future__ import annotations

from typing import Any

import typer

from poisonlab.threads import ENV_VAR, set_threads

DATASET_OPT = typer.Option("digits", "--dataset", "-d", help="cifar10 or digits (embedded, offline)")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="CIFAR-10 location (else $POISONLAB_DATA, cache)")
#: ``--data-dir`` of the config-driven commands (run, matrix, clean-label)
CONFIG_DATA_DIR_OPT = typer.Option(None, "--data-dir", help="override the config's dataset location")
DEVICE_OPT = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda")
THREADS_OPT = typer.Option(
    None,
    "--threads",
    min=1,
    help=f"CPU threads for torch (default: ${ENV_VAR}, else 1 for small models, the free cores for large)",
)
PRECISION_OPT = typer.Option(
    "fp32", "--precision", help="fp32 (default, the same on every CPU) or bf16 (opt-in: faster on AMX/CUDA)"
)
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="no progress bars")
MODEL_ARG = typer.Argument(..., help="model folder or registry id")


def out_option(help: str, default: Any = ...) -> Any:
    """``--out``/``-o`` with a command's own help (required unless ``default`` is given)."""
    return typer.Option(default, "--out", "-o", help=help)


def use_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None keeps the automatic policy of :mod:`poisonlab.threads`)."""
    set_threads(threads)


def check_precision(precision: str) -> str:
    """Validate ``--precision``; ValueError names the accepted values."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"--precision must be fp32 or bf16, got {precision!r}")
    return precision
