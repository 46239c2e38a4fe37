"""uvicorn's sans-I/O WebSocket protocol with lighter per-connection structures.

Every open WebSocket holds uvicorn's receive queue (an :class:`asyncio.Queue`: three deques of
some 760 bytes each, even when empty) and its ``writable`` flag (an :class:`asyncio.Event`, one
more deque), and the handshake's request and response for as long as the connection lasts.
With tens of thousands of idle connections that is about 5 KiB each for nothing.
:class:`LeanWebSocketProtocol` swaps the queue and flag for equivalents that hold a list, and
futures only while someone waits, and lets go of the handshake once it is done. Everything
else is uvicorn's own code.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _Inbox:
    """What uvicorn uses of :class:`asyncio.Queue` (``put_nowait``, ``get``, ``empty``):
    unbounded, first in first out."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                # Pass a wake-up meant for this getter on to the next one.
                if self._items and getter.done() and not getter.cancelled():
                    self._wake_one()
                raise
        if not self._getters:
            self._getters = None
        return self._items.pop(0)

    def _wake_one(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return


class _Flag:
    """What uvicorn uses of :class:`asyncio.Event` (``set``, ``clear``, ``is_set``, ``wait``)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with :class:`_Inbox` and :class:`_Flag`, that
    forgets the handshake once it is done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after it sent the handshake response. The handshake's
        # request and response (with their header objects, some 2 KiB) are not used again.
        super().start_keepalive()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
