"""A process-wide cap on the memory of concurrent image decodes.

Each upload is bounded on its own (:class:`~poisonlab.data.image_limits.ImageLimits`) and each
batch in total pixels, but several requests decoding large images at once still add up: eight
parallel uploads of a 4096x4096 RGBA PNG, each allowed, hold about 2 GiB of pixel buffers.
:class:`DecodeBudget` is a counting semaphore in bytes: before decoding, a request reserves the
bytes its decode may hold at once (:func:`~poisonlab.data.image_limits.decode_cost`, known from
the headers), waits up to ``max_wait_s`` for them in arrival order, else is answered 503
``decode_busy`` with a ``Retry-After``; the bytes come back when the decode ends, failed or not.

A batch decodes its files one after another, so it reserves its largest file's cost, not the
sum. A single decode costing more than the whole budget is not refused (its image is within the
limits): it waits until nothing else is decoding and then runs alone, so memory stays within
``max(capacity, largest single decode)``.

The budget lives in one process (``serve --workers N`` gives each its own); it blocks the calling
thread (decodes run in Starlette's thread pool, never on the event loop).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from poisonlab.service.errors import Rejected

MiB = 1 << 20


class DecodeBudget:
    """At most ``capacity`` bytes of decode buffers reserved at once; FIFO, bounded wait.

    Parameters
    ----------
    capacity : int
        Bytes of pixel buffers all concurrent decodes may hold together (>= 1).
    max_wait_s : float
        Longest a reservation waits for room before it is refused (>= 0; 0: never waits).
    clock : callable
        Monotonic seconds (``time.monotonic``); injected by the tests.
    """

    def __init__(
        self, capacity: int, *, max_wait_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive number of bytes, got {capacity!r}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0 seconds, got {max_wait_s!r}")
        self.capacity, self.max_wait_s, self.clock = capacity, float(max_wait_s), clock
        self._used = 0
        self._waiting: deque[object] = deque()  # tickets in arrival order
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        """Bytes reserved right now."""
        with self._cond:
            return self._used

    @property
    def waiting(self) -> int:
        """Reservations waiting for room right now."""
        with self._cond:
            return len(self._waiting)

    @contextlib.contextmanager
    def reserve(self, cost: int, *, what: str = "this request's images") -> Iterator[int]:
        """Hold ``cost`` bytes (at most ``capacity``) for the ``with`` block; yields the bytes held.

        Raises
        ------
        Rejected
            503 ``decode_busy`` with a ``Retry-After`` header when no room came within
            ``max_wait_s``; nothing is held then.
        ValueError
            A negative ``cost``.
        """
        if cost < 0:
            raise ValueError(f"cost must be >= 0 bytes, got {cost}")
        held = self._acquire(min(int(cost), self.capacity), what)
        try:
            yield held
        finally:
            with self._cond:
                self._used -= held
                self._cond.notify_all()

    def _acquire(self, cost: int, what: str) -> int:
        ticket = object()
        deadline = self.clock() + self.max_wait_s
        with self._cond:
            self._waiting.append(ticket)
            try:
                # first come, first served: a large decode is not starved by a stream of small ones
                while self._waiting[0] is not ticket or self._used + cost > self.capacity:
                    left = deadline - self.clock()
                    if left <= 0:
                        raise self._busy(what)
                    self._cond.wait(left)
                self._used += cost
                return cost
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now

    def _busy(self, what: str) -> Rejected:
        retry = max(1, math.ceil(self.max_wait_s))
        return Rejected(
            "decode_busy",
            f"the server is decoding as many images as its memory budget allows "
            f"({self.capacity / MiB:g} MiB of pixel buffers); {what} waited {self.max_wait_s:g} s; "
            f"retry in {retry} s",
            503,
            headers={"Retry-After": str(retry)},
        )
