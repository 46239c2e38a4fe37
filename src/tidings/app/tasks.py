"""How the app and the client core share one asyncio event loop.

Kivy 2.3 can run its main loop as a coroutine (`App.async_run(async_lib="asyncio")`): every
frame it awaits the asyncio loop, so other tasks run between frames. `tidings.app.main.run`
starts exactly that with :func:`asyncio.run`, and the client runtime (its websocket, keepalive,
reconnects) lives in the same loop as ordinary tasks. There is one thread: widget code may touch
the client's results directly, and no locks or cross-thread queues are needed.

Kivy callbacks (a tap, a key press) are plain functions that must not block, so they start
client calls with :meth:`Tasks.spawn`: the coroutine becomes a task on the running loop, its
result (or error) comes back through a callback on the same thread, and the task is kept
referenced until it ends. Client events are consumed by one long-running task that forwards them
to the screens.

The UI tests use the same arrangement: an async test drives frames by hand
(`EventLoop.idle()` between `await asyncio.sleep(...)`), so the app, the client under test and a
second client all run on the test's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Tasks:
    """The app's background work: spawns coroutines and reports their failures."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[T]:
        """Run `coro` on the running loop; call `on_done(result)` or `on_error(exc)` after."""
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)

        def finished(done: asyncio.Task[T]) -> None:
            self._running.discard(done)
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                log.warning("background task failed: %r", exc)
                (on_error or self._on_error)(exc)
            elif on_done is not None:
                on_done(done.result())

        task.add_done_callback(finished)
        return task

    @property
    def pending(self) -> int:
        return len(self._running)

    async def cancel_all(self) -> None:
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
