"""Grids run cell by cell, in this process or on a Ray cluster (docs/scale-out.md).

- :class:`LocalExecutor`: the cells one after the other in this process (the default);
- :class:`RayExecutor`: each cell a Ray task, on a local Ray or a cluster (``poisonlab[ray]``);
- :func:`make_executor`: either, from the grid commands' options;
- :class:`CellLog`, :func:`store_home`, :class:`ProcessMemo`: resume, the model store, what a
  worker's cells share.

The grid runners (:func:`~poisonlab.experiments.matrix.run.run_matrix`,
:func:`~poisonlab.experiments.clean_label.run.run_clean_label`,
:func:`~poisonlab.experiments.detection.run.run_detection`) take an ``executor``.  Ray itself is
imported only when a :class:`RayExecutor` is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poisonlab.experiments.executor.base import (
    CellOutcome,
    CellTask,
    Executor,
    GridIncomplete,
    GridSummary,
    LocalExecutor,
)
from poisonlab.experiments.executor.store import CellLog, ProcessMemo, fingerprint, resolve_store, store_home

if TYPE_CHECKING:
    from poisonlab.experiments.executor.ray_executor import RayExecutor

__all__ = [
    "EXECUTORS",
    "CellLog",
    "CellOutcome",
    "CellTask",
    "Executor",
    "GridIncomplete",
    "GridSummary",
    "LocalExecutor",
    "ProcessMemo",
    "RayExecutor",
    "fingerprint",
    "make_executor",
    "resolve_store",
    "store_home",
]

#: the executor kinds the grid commands accept
EXECUTORS = ("local", "ray")


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # its module is light; ray itself loads when one is built
        from poisonlab.experiments.executor.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)


def make_executor(
    kind: str = "local",
    *,
    address: str | None = None,
    workers: int | None = None,
    store: Any = None,
    threads: int | None = None,
    progress: bool = False,
) -> Executor:
    """The executor the grid commands' ``--executor`` options describe.

    Parameters
    ----------
    kind : {"local", "ray"}
        Where the cells run.
    address : str, optional
        Ray only: ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT`` (default: a local Ray).
    workers : int, optional
        Ray only: cells at a time (:class:`RayExecutor`).
    store : path-like, optional
        The model store (default ``$POISONLAB_HOME``).
    threads : int, optional
        Threads per cell (Ray: default 1; local: default the process's policy, see
        :class:`LocalExecutor`).
    progress : bool
        One line per finished cell on stderr.

    Raises
    ------
    ValueError
        For an unknown kind, Ray options with ``kind="local"``, or a bad value;
        :class:`~poisonlab.experiments.executor.ray_executor.RayMissingError` (a ValueError) when
        ``kind="ray"`` and Ray is not installed.
    """
    if kind not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        given = [
            flag for flag, value in (("--ray-address", address), ("--workers", workers)) if value is not None
        ]
        if given:  # an empty --ray-address too: it was given, and a local run would ignore it
            raise ValueError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --executor ray")
        return LocalExecutor(store=store, threads=threads, progress=progress)
    from poisonlab.experiments.executor.ray_executor import RayExecutor

    return RayExecutor(address=address, workers=workers, store=store, threads=threads, progress=progress)
