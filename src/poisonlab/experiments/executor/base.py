"""What every executor shares: cell tasks, their outcomes, the retry rule, the progress lines.

A grid (a matrix's attack rows, the clean-label benchmark's trials x attacks, the detection
benchmark's cells) is a list of :class:`CellTask`: a top-level (so picklable) function and its
arguments, ``fn(config, cell spec, store path, ...) -> record``, where the record is a small
JSON-ready dict.  An executor runs the tasks and hands each :class:`CellOutcome` to the caller as
the cell finishes, in the order cells finish, so the caller can write partial results and the
executor never holds more than the cells in flight.  A cell that raises is run once more; a cell
that fails twice is reported as failed and the grid goes on.

:class:`LocalExecutor` runs the cells one after the other in this process (the default, and
what every grid command did before executors existed);
:class:`~poisonlab.experiments.executor.ray_executor.RayExecutor` runs them as Ray tasks.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from poisonlab.experiments.executor.store import resolve_store

__all__ = ["CellOutcome", "CellTask", "Executor", "GridIncomplete", "GridSummary", "LocalExecutor"]

#: A function that renders a finished cell's record as a short phrase for its progress line.
Describe = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class CellTask:
    """One cell of a grid.

    Attributes
    ----------
    key : str
        Stable id of the cell within its grid (the resume log's key), e.g. ``"attack:flip"``.
    fn : callable
        A module-level function (Ray ships it by reference), ``fn(*args) -> dict``.
    args : tuple
        Its arguments: the config, the cell's spec, the store path, options.
    label : str
        What the progress line calls the cell (default: the key).
    setup : bool
        A set-up cell (a clean model the others need): not counted in the progress lines, and
        silent in this process, where the command announces it itself.
    """

    key: str
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    label: str = ""
    setup: bool = False

    @property
    def name(self) -> str:
        return self.label or self.key


@dataclass
class CellOutcome:
    """A finished cell: its record, or the error of its last attempt.

    Attributes
    ----------
    key, label, setup
        The task's.
    record : dict or None
        What the cell returned (None when it failed).
    error : str or None
        ``"ExceptionType: message"`` of the last failed attempt (None when it succeeded).
    traceback : str or None
        The last failure's traceback text, for the failure log.
    attempts : int
        1, or 2 when the first attempt failed.
    compute_seconds : float or None
        Seconds inside the cell function on its last attempt (None when it failed).
    wall_seconds : float
        Seconds from handing the last attempt to the executor to its result at the caller.
    worker : str
        ``host:pid`` of the process that ran the last attempt.
    """

    key: str
    label: str
    setup: bool
    record: dict[str, Any] | None
    error: str | None
    traceback: str | None
    attempts: int
    compute_seconds: float | None
    wall_seconds: float
    worker: str

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class GridSummary:
    """What one :meth:`Executor.run` did, without the records (those went to the caller).

    Attributes
    ----------
    total : int
        Tasks given.
    finished : int
        Tasks that returned a record.
    failed : list of CellOutcome
        Tasks that failed on every attempt.
    retried : int
        Tasks whose first attempt failed.
    seconds : float
        Wall time of the run.
    timings : list of tuple
        ``(key, compute_seconds, wall_seconds)`` per finished cell (floats: a few bytes a cell).
    """

    total: int
    finished: int = 0
    failed: list[CellOutcome] = field(default_factory=list)
    retried: int = 0
    seconds: float = 0.0
    timings: list[tuple[str, float, float]] = field(default_factory=list)

    def add(self, outcome: CellOutcome) -> None:
        self.retried += outcome.attempts > 1
        if outcome.ok:
            self.finished += 1
            self.timings.append((outcome.key, outcome.compute_seconds or 0.0, outcome.wall_seconds))
        else:
            self.failed.append(outcome)


class GridIncomplete(ValueError):
    """Raised by a grid runner after its last cell when some cells failed twice.

    The finished cells' results are written by then; the message (one line) names the failed
    cells and their errors.  ``partial`` holds the runner's result so far.
    """

    def __init__(self, failed: Sequence[CellOutcome], total: int, partial: Any = None) -> None:
        shown = "; ".join(f"{o.label or o.key}: {o.error}" for o in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        super().__init__(
            f"{len(failed)} of {total} cells failed after {max(o.attempts for o in failed)} attempts "
            "(the finished cells are saved; a rerun into the same --out, with --resume for matrix "
            f"and clean-label, runs only the others): "
            f"{shown}{more}"
        )
        self.failed = list(failed)
        self.partial = partial


def error_text(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, on one line (a Ray task error gives its cause's)."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError wraps the cell's exception
    if isinstance(cause, BaseException):
        exc = cause
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def use_threads(threads: int) -> None:
    """Fix this process's threads: poisonlab's policy (:func:`poisonlab.threads.set_threads`) and
    torch's own count, which code outside the policy (the crafting attacks) runs on."""
    import torch

    from poisonlab.threads import set_threads

    set_threads(threads)
    torch.set_num_threads(threads)


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Executor(ABC):
    """Runs a grid's cells and streams their outcomes (see the module docstring).

    Parameters
    ----------
    store : path-like, optional
        The model store the cells use (:func:`~poisonlab.experiments.executor.store.resolve_store`;
        default ``$POISONLAB_HOME``, read when a run starts).
    threads : int, optional
        Threads per cell (:func:`use_threads`); see the subclasses for the default.
    progress : bool
        Print one line per finished cell (and per retry) on stderr.
    retries : int
        Further attempts of a failed cell (0 or 1; the grid commands use 1).
    """

    #: ``"local"`` or ``"ray"``
    kind: ClassVar[str]
    #: whether cells run in this process (they may then show their own progress bars)
    in_process: ClassVar[bool]

    def __init__(
        self, *, store: Any = None, threads: int | None = None, progress: bool = False, retries: int = 1
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        if retries not in (0, 1):
            raise ValueError(f"retries must be 0 or 1, got {retries!r}")
        self._store = None if store is None else resolve_store(store)
        self.threads = threads
        self.progress = progress
        self.retries = retries
        #: the :class:`GridSummary` of the latest :meth:`run` (timings for benchmarks)
        self.last: GridSummary | None = None
        self._console: Any = None

    @property
    def store(self) -> str:
        """The store folder the cells use, as a string (what travels to the workers)."""
        return str(self._store or resolve_store(None))

    def run(
        self,
        tasks: Sequence[CellTask],
        *,
        on_outcome: Callable[[CellOutcome], None] | None = None,
        describe: Describe | None = None,
        device: str = "cpu",
        already: int = 0,
    ) -> GridSummary:
        """Run ``tasks``; call ``on_outcome`` in this process as each one finishes.

        Parameters
        ----------
        tasks : sequence of CellTask
            Keys must be unique.  Set-up tasks should come first: they start first.
        on_outcome : callable, optional
            Called with every :class:`CellOutcome` (failures included), in finishing order.
        describe : callable, optional
            Renders a (non-set-up) record for the cell's progress line.
        device : str
            The cells' torch device; ``cuda`` (or ``auto`` on a cluster with GPUs) makes each
            Ray task ask for a GPU.
        already : int
            Cells of the grid finished before this run (the progress lines count from there).

        Returns
        -------
        GridSummary
        """
        keys = [t.key for t in tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"cell keys must be unique, got {keys}")
        summary, start = GridSummary(total=len(tasks)), time.perf_counter()
        total, done = already + sum(not t.setup for t in tasks), already
        for outcome in self._execute(list(tasks), device):
            summary.add(outcome)
            done += not outcome.setup
            self._line(outcome, done, total, describe)
            if on_outcome is not None:
                on_outcome(outcome)
        summary.seconds = time.perf_counter() - start
        self.last = summary
        return summary

    @abstractmethod
    def _execute(self, tasks: list[CellTask], device: str) -> Iterator[CellOutcome]:
        """Yield one outcome per task as it finishes (failures retried ``retries`` times)."""

    def connect(self) -> None:
        """Get ready to run cells (start or join Ray); the local executor has nothing to do.

        A command calls it as soon as its config is valid, so that the workers start while it
        loads the data."""
        return None

    def close(self) -> None:
        """Release what the executor started (a local Ray); the local executor has nothing."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ progress
    def _print(self, text: str, style: str | None = None) -> None:
        if not self.progress:
            return
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        self._console.print(text, style=style, markup=False, soft_wrap=True)

    def _retrying(self, task: CellTask, attempt: int, error: str) -> None:
        self._print(f"{task.name}: attempt {attempt} failed ({error}); retrying", style="yellow")

    def _line(self, outcome: CellOutcome, done: int, total: int, describe: Describe | None) -> None:
        where = "" if self.in_process else f" on {outcome.worker}"
        tries = f", attempt {outcome.attempts}" if outcome.attempts > 1 else ""
        count = "" if outcome.setup else f"[{done}/{total}] "
        name = outcome.label or outcome.key
        if not outcome.ok:
            text = f"{count}{name}: FAILED after {outcome.attempts} attempts{where}: {outcome.error}"
            self._print(text, style="red")
        elif not (outcome.setup and self.in_process):
            text = "done" if describe is None or outcome.setup else describe(outcome.record or {})
            self._print(f"{count}{name}: {text} ({outcome.compute_seconds or 0.0:.1f} s{tries}{where})")


class LocalExecutor(Executor):
    """The cells one after the other in this process: today's behaviour, and the default.

    Without ``threads`` the cells follow this process's thread policy (:mod:`poisonlab.threads`)
    and torch's default elsewhere; with it, :func:`use_threads` fixes both for the process, as a
    Ray worker does, so the two executors compute on the same thread counts (the same numbers
    to the last bit, crafting attacks included).
    """

    kind = "local"
    in_process = True

    def _execute(self, tasks: list[CellTask], device: str) -> Iterator[CellOutcome]:
        if self.threads is not None:
            use_threads(self.threads)
        for task in tasks:
            yield self._attempts(task)

    def _attempts(self, task: CellTask) -> CellOutcome:
        for attempt in range(1, self.retries + 2):
            start = time.perf_counter()
            try:
                record = task.fn(*task.args)
            except Exception as exc:  # noqa: BLE001 - a failed cell is reported, never fatal
                error, trace = error_text(exc), traceback.format_exc()
                if attempt <= self.retries:
                    self._retrying(task, attempt, error)
                    continue
                seconds = time.perf_counter() - start
                return CellOutcome(
                    task.key,
                    task.label,
                    task.setup,
                    None,
                    error,
                    trace,
                    attempt,
                    None,
                    seconds,
                    worker_name(),
                )
            seconds = time.perf_counter() - start
            return CellOutcome(
                task.key, task.label, task.setup, record, None, None, attempt, seconds, seconds, worker_name()
            )
        raise AssertionError("unreachable")  # pragma: no cover
