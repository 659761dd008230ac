"""The grid commands' executor options: ``--executor``, ``--ray-address``, ``--workers``,
``--store``, ``--resume`` (``poisonlab matrix``, ``poisonlab clean-label``, ``poisonlab bench
detection``).

Light on purpose (typer only): this module is imported when ``poisonlab`` starts; Ray and the
executors are imported inside :func:`build_executor`, when a command runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

EXECUTOR_OPT = typer.Option(
    "local",
    "--executor",
    help="where the grid's cells run: local (this process, one after the other) or ray (one Ray "
    "task each; pip install 'poisonlab\\[ray]')",
)
RAY_ADDRESS_OPT = typer.Option(
    None,
    "--ray-address",
    help="with --executor ray: auto (this machine's cluster), ray://HOST:PORT or HOST:PORT; "
    "default: a local Ray started for this run",
)
WORKERS_OPT = typer.Option(
    None,
    "--workers",
    min=1,
    help="with --executor ray: cells at a time (a local Ray's size, default the CPU count; on a "
    "cluster the most cells in flight)",
)
STORE_OPT = typer.Option(
    None,
    "--store",
    help="folder of models and datasets by content hash, shared by the workers (default "
    "$POISONLAB_HOME); on a cluster a path every node mounts",
)
RESUME_OPT = typer.Option(
    False, "--resume", help="continue a stopped run in --out: its finished cells (cells.jsonl) are kept"
)


@contextlib.contextmanager
def executor_session(
    kind: str,
    *,
    address: str | None,
    workers: int | None,
    store: Path | None,
    threads: int | None,
    quiet: bool,
) -> Iterator[Any]:
    """The executor of a grid command, closed (a local Ray shut down) when the block ends.

    With ``--store`` the block runs with ``POISONLAB_HOME`` set to it, so this process's own
    models (the clean baseline trained before the cells, the registry) are the store's too.

    Raises
    ------
    ValueError
        For a bad combination of options, or ``--executor ray`` without Ray (one line that says
        how to install it).
    """
    from poisonlab.experiments.executor import make_executor, store_home

    executor = make_executor(
        kind, address=address, workers=workers, store=store, threads=threads, progress=not quiet
    )
    try:
        with store_home(executor.store if store is not None else None):
            yield executor
    finally:
        executor.close()
