"""Operations of one kind that reach the store together run as one transaction.

A :class:`Batcher` queues the items handed to it during one turn of the event loop and runs
them together at its end: one transaction, a handful of statements over arrays, instead of a
transaction and its round trips per item. While a batch runs, new items queue up and go with
the next one, so the busier the node, the bigger the batches.

Order: every item has a key (a Send's conversation). Items of one key run in the order they
were queued: a batch takes all the queued items of a key at once, and a key held by a running
batch waits for it to finish, its items staying queued, while the items of other keys may start
in another batch (at most ``lanes`` batches run at once, each on its own pooled connection).

A batch's function gives each item its own outcome (a value, or the exception that item alone
raises, e.g. :class:`~tidings.server.domain.Refused`); an exception of the whole batch (the
database went away) goes to every item of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

#: Most items one batch takes: its statements' arrays stay a few hundred rows long.
MAX_BATCH = 256


class Batcher(Generic[Item, Outcome]):
    """Runs the items queued together through ``run`` (see the module's description)."""

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Outcome | BaseException]]],
        key: Callable[[Item], Hashable],
        *,
        lanes: int,
    ) -> None:
        self._run = run
        self._key = key
        self._lanes = lanes
        self._queue: list[tuple[Item, asyncio.Future[Outcome]]] = []
        #: keys of the batches running now
        self._busy: set[Hashable] = set()
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def submit(self, item: Item) -> Outcome:
        """Queue ``item``; its outcome once the batch it went with is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        """Start batches from the queue while a lane is free and some key is not busy."""
        self._scheduled = False
        while self._queue and len(self._running) < self._lanes:
            taken: list[tuple[Item, asyncio.Future[Outcome]]] = []
            left: list[tuple[Item, asyncio.Future[Outcome]]] = []
            keys: set[Hashable] = set()
            for entry in self._queue:
                key = self._key(entry[0])
                if key in self._busy or len(taken) >= MAX_BATCH:
                    left.append(entry)
                else:
                    taken.append(entry)
                    keys.add(key)
            if not taken:
                return
            self._queue = left
            self._busy |= keys
            task = asyncio.get_running_loop().create_task(self._batch(taken, keys))
            self._running.add(task)

    async def _batch(
        self, taken: list[tuple[Item, asyncio.Future[Outcome]]], keys: set[Hashable]
    ) -> None:
        try:
            outcomes = await self._run([item for item, _ in taken])
        except BaseException as exc:  # the whole batch failed: every item hears of it
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), outcome in zip(taken, outcomes, strict=True):
                if future.done():  # its caller went away
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self._busy -= keys
            task = asyncio.current_task()
            if task is not None:
                self._running.discard(task)
            if self._queue:
                self._start()
