"""Cells as Ray tasks: a local Ray started on demand, or a Ray cluster (Moritz et al., "Ray: A
Distributed Framework for Emerging AI Applications", OSDI 2018).

Each cell is one task that asks for ``threads`` CPUs (1 by default: a digits or CIFAR-10 cell on
one core each beats one cell on every core, see BENCHMARKS.md "Threads") and one GPU when the
cells run on CUDA.  The task carries the cell's function (by reference: the workers import
poisonlab) and its arguments (the config and the cell's spec, a few KB); the cells load data from
the config and models from the store (:mod:`.store`), and return small JSON-ready records.  The
driver keeps at most a window of tasks in flight and takes each result as it arrives
(:func:`ray.wait`), so its memory does not grow with the number of cells.  A task that raises, or
whose worker dies, is submitted once more; one that fails twice is reported and the grid goes on.

Ray is an optional dependency (``pip install 'poisonlab[ray]'``), imported only when a
:class:`RayExecutor` is built.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import traceback
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

from poisonlab.experiments.executor.base import (
    CellOutcome,
    CellTask,
    Executor,
    error_text,
    use_threads,
    worker_name,
)

__all__ = ["RAY_INSTALL", "RayExecutor", "RayMissingError", "require_ray"]

#: how to get Ray, printed when it is missing
RAY_INSTALL = "pip install 'poisonlab[ray]'"
_ADDRESS = re.compile(r"^(auto|ray://[^\s/:]+:\d+|[^\s/:]+:\d+)$")
_MIB = 1024 * 1024
#: how long ``--ray-address`` may take to accept a connection before it is refused
_PROBE_SECONDS = 5.0


class RayMissingError(ValueError):
    """``--executor ray`` without Ray installed (a ValueError: the CLI prints it on one line)."""


def require_ray() -> Any:
    """The ``ray`` module; :class:`RayMissingError` saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise RayMissingError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _local_limit() -> int:
    """The most cells a local Ray may run at once: four per CPU (cells wait on I/O and small
    models; beyond that each worker process only adds memory, ~0.5 GB with torch)."""
    return 4 * (os.cpu_count() or 1)


def _check_address(address: str) -> None:
    """Refuse a malformed ``--ray-address``, and a ``HOST:PORT`` where nothing answers (Ray itself
    retries such an address for minutes, printing a line every 5 seconds)."""
    if not _ADDRESS.match(address):
        raise ValueError(f"--ray-address must be auto, ray://HOST:PORT or HOST:PORT, got {address!r}")
    if address == "auto":
        return
    host, _, port_text = address.removeprefix("ray://").rpartition(":")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"--ray-address {address}: the port must be 1 to 65535, got {port}")
    try:
        socket.create_connection((host, port), timeout=_PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(
            f"--ray-address {address}: nothing answers at {host}:{port} ({reason}); start the cluster "
            "(ray start --head) or check the address"
        ) from None


def _ray_cell(fn: Any, args: tuple, threads: int) -> dict[str, Any]:
    """The body of every Ray task: the cell on ``threads`` threads, timed."""
    use_threads(threads)  # explicit: a worker must not read the load of its neighbours as free cores
    start = time.perf_counter()
    record = fn(*args)
    return {"record": record, "compute_seconds": time.perf_counter() - start, "worker": worker_name()}


def _warm() -> None:
    """Import what every cell needs (torch, the detectors, the runners) in a fresh worker."""
    import poisonlab.experiments.clean_label.run
    import poisonlab.experiments.detection.run
    import poisonlab.experiments.matrix.run  # noqa: F401


class RayExecutor(Executor):
    """Run each cell as a Ray task (see the module docstring).

    Parameters
    ----------
    address : str, optional
        None: start a local Ray for this run (``workers`` CPUs' worth of cells at a time) unless
        this process already joined one; ``"auto"``: the cluster this machine belongs to
        (``ray start`` / ``ray up``); ``"ray://HOST:PORT"``: a cluster's Ray Client port;
        ``"HOST:PORT"``: a cluster's GCS.
    workers : int, optional
        Cells at a time.  With a local Ray, its size (default: the CPU count); on a cluster, the
        most cells in flight (default: twice the cells the cluster fits now, at least 2).
    store : path-like, optional
        The model store (default ``$POISONLAB_HOME``): on a cluster, a folder every node mounts.
    threads : int, optional
        Torch threads (and Ray CPUs) per cell; default 1.
    progress : bool
        One line per finished cell on stderr.
    retries : int
        Further attempts of a failed cell (0 or 1).
    object_store_mib : int
        Object-store size of a local Ray (records are small; 256 MiB leaves room to spare).

    Raises
    ------
    RayMissingError
        When Ray is not installed.
    ValueError
        For a malformed address or worker count.
    """

    kind = "ray"
    in_process = False

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        store: Any = None,
        threads: int | None = None,
        progress: bool = False,
        retries: int = 1,
        object_store_mib: int = 256,
    ) -> None:
        super().__init__(store=store, threads=threads or 1, progress=progress, retries=retries)
        if address is not None:
            _check_address(address)
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
        if address is None and workers is not None and workers > _local_limit():
            raise ValueError(
                f"--workers {workers}: a local Ray starts one worker process per cell at a time; this "
                f"machine's {os.cpu_count()} CPUs take at most {_local_limit()}; for more, join a cluster "
                "with --ray-address"
            )
        if object_store_mib < 80:
            raise ValueError(f"object_store_mib must be >= 80 (Ray's minimum), got {object_store_mib}")
        self.ray = require_ray()
        self.address = address
        self.workers = workers
        self.object_store_mib = object_store_mib
        self._started = False
        self._warmed = False
        self._warm_refs: list[Any] = []

    def __repr__(self) -> str:
        where = self.address or "local"
        return f"RayExecutor(address={where!r}, workers={self.workers}, threads={self.threads})"

    # ---------------------------------------------------------------------------- the cluster
    def connect(self) -> None:
        """Join the cluster, or start the local Ray (once; a Ray this process joined is reused),
        and have the workers import poisonlab meanwhile (:func:`_warm`, not waited for)."""
        ray = self.ray
        if not ray.is_initialized():
            quiet = {"logging_level": logging.WARNING, "include_dashboard": False}
            if self.address is None:
                cpus = (self.workers or os.cpu_count() or 1) * (self.threads or 1)
                ray.init(num_cpus=cpus, object_store_memory=self.object_store_mib * _MIB, **quiet)
                self._started = True
            else:
                self._join(ray)
        if not self._warmed:
            # a worker's first cell imports torch and poisonlab (seconds); start that now, while
            # the command loads its data, rather than when the first cells arrive
            warm = ray.remote(_warm).options(num_cpus=self.threads or 1, max_retries=0)
            self._warm_refs = [warm.remote() for _ in range(self.window(0.0))]
            self._warmed = True

    def _join(self, ray: Any) -> None:
        """``ray.init`` on the cluster at ``address``; its failure as one line naming the option
        (Ray's own text names flags of its CLI and spans lines; the Ray Client warns on stderr)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
            if self.address == "auto":
                raise ValueError(
                    "--ray-address auto: no Ray cluster runs on this machine (start one with ray start "
                    "--head, or leave --ray-address out for a local Ray of this run)"
                ) from None
            raise ValueError(
                f"--ray-address {self.address}: cannot join the cluster ({error_text(exc)})"
            ) from None

    def close(self) -> None:
        """Shut down the local Ray this executor started (a cluster is left running)."""
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started, self._warmed, self._warm_refs = False, False, []

    def _resources(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.ray.cluster_resources().items()}

    def gpus_per_cell(self, device: str) -> float:
        """1 when the cells run on CUDA (``cuda``, or ``auto`` on a cluster with GPUs), else 0."""
        if device.startswith("cuda"):
            return 1.0
        return 1.0 if device == "auto" and self._resources().get("GPU", 0) >= 1 else 0.0

    def window(self, gpus: float) -> int:
        """Cells in flight at once (see ``workers``)."""
        if self.address is None and self.workers is not None:
            return self.workers  # exactly the local Ray's slots: no task waits, overhead is measurable
        resources = self._resources()
        fits = int(resources.get("CPU", 0) // (self.threads or 1))
        if gpus:
            fits = min(fits, int(resources.get("GPU", 0) // gpus))
        if self.address is None:
            return max(1, fits)
        return self.workers or max(2, 2 * fits)

    # ---------------------------------------------------------------------------------- run
    def _execute(self, tasks: list[CellTask], device: str) -> Iterator[CellOutcome]:
        ray = self.ray
        self.connect()
        gpus = self.gpus_per_cell(device)
        remote = ray.remote(_ray_cell).options(
            num_cpus=self.threads or 1, num_gpus=gpus, max_retries=0, retry_exceptions=False
        )
        window, queue = self.window(gpus), deque((task, 1) for task in tasks)
        pending: dict[Any, tuple[CellTask, int, float]] = {}
        while queue or pending:
            while queue and len(pending) < window:
                task, attempt = queue.popleft()
                ref = remote.remote(task.fn, task.args, self.threads or 1)
                pending[ref] = (task, attempt, time.perf_counter())
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task, attempt, submitted = pending.pop(ref)
                outcome = self._collect(ref, task, attempt, submitted)
                if outcome is None:  # failed, one more attempt: first in line
                    queue.appendleft((task, attempt + 1))
                    continue
                yield outcome

    def _collect(self, ref: Any, task: CellTask, attempt: int, submitted: float) -> CellOutcome | None:
        """The outcome of a finished task; None when it failed and gets another attempt."""
        try:
            payload = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...: reported
            wall = time.perf_counter() - submitted
            error = error_text(exc)
            if attempt <= self.retries:
                self._retrying(task, attempt, error)
                return None
            trace = str(exc) if getattr(exc, "cause", None) is not None else traceback.format_exc()
            return CellOutcome(task.key, task.label, task.setup, None, error, trace, attempt, None, wall, "?")
        wall = time.perf_counter() - submitted
        return CellOutcome(
            task.key,
            task.label,
            task.setup,
            payload["record"],
            None,
            None,
            attempt,
            payload["compute_seconds"],
            wall,
            payload["worker"],
        )
