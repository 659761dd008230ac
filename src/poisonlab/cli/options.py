"""Options shared by several commands, declared once so that their names and help agree.

A Typer option object only describes the option, so one object can sit in many signatures.
This module is imported whenever ``poisonlab`` starts (``--help`` and ``--version`` included),
so it must stay light: typer only, never torch, numpy or the library's heavy modules (a test
checks it); what needs them is imported inside the functions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import typer

#: :data:`poisonlab.threads.ENV_VAR`, repeated here so that the help text does not import torch
#: (tests/cli/test_startup.py checks that the two agree)
THREADS_ENV_VAR = "POISONLAB_THREADS"


def dataset_name(value: str | None) -> str | None:
    """``--dataset``'s callback: its catalog name (``cifar-10`` -> ``cifar10``), an unknown one
    refused while the options are read, named as the option (the catalog is imported only here:
    a command that reads ``--dataset`` loads that dataset anyway)."""
    if value is None:
        return None
    from poisonlab.data.catalog import dataset_key

    try:
        return dataset_key(value)
    except ValueError as exc:
        _refuse(f"--dataset: {exc}")


DATASET_OPT = typer.Option(
    "digits", "--dataset", "-d", help="cifar10 or digits (embedded, offline)", callback=dataset_name
)
DATA_DIR_OPT = typer.Option(
    None,
    "--data-dir",
    help="CIFAR-10 location (default: $POISONLAB_DATA, else ../shared/datasets/cifar10-jpeg "
    "or $POISONLAB_SHARED/datasets/cifar10-jpeg, else the cache)",
)
#: ``--data-dir`` of the config-driven commands (run, matrix, clean-label)
CONFIG_DATA_DIR_OPT = typer.Option(None, "--data-dir", help="override the config's dataset location")


def _device_name(value: str | None) -> str | None:
    """Refuse an unknown ``--device`` while the options are read, not after the first training
    (whether CUDA is there is checked where the device is resolved: that needs torch)."""
    if value is not None and value not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", value):
        _refuse(f"unknown device {value!r}; expected auto, cpu, cuda or cuda:N")
    return value


DEVICE_OPT = typer.Option(
    "auto", "--device", help="auto (CUDA when present), cpu or cuda", callback=_device_name
)
THREADS_OPT = typer.Option(
    None,
    "--threads",
    min=1,
    help=f"CPU threads for torch (default: ${THREADS_ENV_VAR}, else 1 for small models, the free "
    "cores for large)",
)
PRECISION_OPT = typer.Option(
    "fp32", "--precision", help="fp32 (default, the same on every CPU) or bf16 (opt-in: faster on AMX/CUDA)"
)
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="no progress bars")
JSON_OPT = typer.Option(
    False, "--json", help="print one JSON document to stdout (and nothing else there); messages go to stderr"
)
#: ``--seed``'s range: poisonlab.training.options.SEED_MAX (not imported: it would import torch at start-up)
SEED_RANGE = {"min": 0, "max": 2**32 - 1}
SEED_OPT = typer.Option(None, "--seed", help="override the config's seed(s) with this one", **SEED_RANGE)
#: the most seeds one command replicates over: each trains its own models (a CIFAR-10 grid seed is
#: hours), so a larger count is a typo, caught before the first seed starts
MAX_SEEDS = 1000
GRID_SEEDS_OPT = typer.Option(
    None,
    "--seeds",
    min=1,
    max=MAX_SEEDS,
    help="replicate the whole grid over seeds 0..N-1 (OUT/seed-K each, its own clean model), then a "
    "combined report: mean, sample std and 95% intervals",
)


def seed_list(seed: int | None, seeds: int | None) -> list[int | None]:
    """The seeds a grid command runs: ``[seed]`` (None: the config's own), or 0..N-1 for ``--seeds N``."""
    if seed is not None and seeds is not None:
        raise ValueError("give --seed S (one seed) or --seeds N (seeds 0..N-1), not both")
    return [seed] if seeds is None else list(range(seeds))


OVERWRITE_OPT = typer.Option(
    False,
    "--overwrite",
    help="replace a run already saved in --out (without it such a folder is refused up front)",
)
MODEL_ARG = typer.Argument(..., help="model folder or registry id")


def out_option(help: str, default: Any = ...) -> Any:
    """``--out``/``-o`` with a command's own help (required unless ``default`` is given).

    A file at the path, or above it, is refused while the options are read, before any loading
    or training (:func:`poisonlab.provenance.check_output_folder`): one ``error:`` line, exit 2.
    """
    return typer.Option(default, "--out", "-o", help=help, callback=_output_folder)


def _output_folder(value: Path | None) -> Path | None:
    from poisonlab.provenance import check_output_folder

    if value is not None:
        try:
            check_output_folder(value)
        except FileExistsError as exc:
            _refuse(str(exc))
    return value


def _refuse(message: str) -> NoReturn:
    """An option refused while the options are read: one ``error:`` line, exit 2 (as
    :func:`~poisonlab.cli._errors.cli_errors` does for errors of the command itself)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def use_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None keeps the automatic policy of :mod:`poisonlab.threads`).

    An explicit choice (``--threads`` or ``POISONLAB_THREADS``) also becomes torch's own default
    for the command, so torch work outside :func:`~poisonlab.threads.compute_threads` obeys it
    too instead of starting one thread per core.
    """
    import torch

    from poisonlab.threads import requested_threads, set_threads  # imports torch: only when a command runs

    set_threads(threads)
    chosen = requested_threads()
    if chosen is not None and torch.get_num_threads() != chosen:
        torch.set_num_threads(chosen)


def check_precision(precision: str) -> str:
    """Validate ``--precision``; ValueError names the accepted values."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"--precision must be fp32 or bf16, got {precision!r}")
    return precision
