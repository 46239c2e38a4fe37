"""Idle deadlines of every connection of one event loop under a single timer."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol


class Watched(Protocol):
    """What the watch needs of a connection."""

    def check_idle(self) -> None:
        """Its deadline passed: close it if it was not heard from since, or call
        :func:`watch_idle` again with the next deadline."""


#: What the watch holds of a connection: a one-item list, emptied (``[None]``) when the
#: connection ends so the heap does not keep it alive.
Cell = list[Watched | None]


class IdleWatch:
    """A heap of (deadline, n, cell) instead of a timer per connection. A connection is looked
    at when its deadline passes and pushed back with a later one if it was heard from since."""

    __slots__ = ("_at", "_count", "_heap", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Cell]] = []
        self._count = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = float("inf")

    def watch(self, deadline: float, cell: Cell) -> None:
        heapq.heappush(self._heap, (deadline, next(self._count), cell))
        if deadline < self._at:
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, float("inf")
        heap, now = self._heap, self._loop.time()
        while heap and heap[0][0] <= now:
            watched = heapq.heappop(heap)[2][0]
            if watched is not None:
                watched.check_idle()  # may push it back with its next deadline
        if heap:
            self._arm(heap[0][0])
        elif _watches.get(self._loop) is self:
            del _watches[self._loop]


#: One watch per running event loop (dropped when it has nothing left to watch).
_watches: dict[asyncio.AbstractEventLoop, IdleWatch] = {}


def watch_idle(deadline: float, cell: Cell) -> None:
    """Have ``cell[0].check_idle()`` called once ``deadline`` (loop time) has passed."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = IdleWatch(loop)
    watch.watch(deadline, cell)
