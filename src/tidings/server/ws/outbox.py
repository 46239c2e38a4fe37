"""The bounded frame queue of one connection."""

from __future__ import annotations

import asyncio


class Outbox:
    """The bounded frame queue of one connection, for one consumer (the pump). Lighter than
    :class:`asyncio.Queue` (three deques of some 760 bytes each): an idle connection holds an
    empty list and nothing else. ``None`` tells the pump to close the socket."""

    __slots__ = ("_getter", "_items", "_limit", "_putters")

    def __init__(self, limit: int) -> None:
        self._items: list[bytes | None] = []
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._limit

    def put_nowait(self, item: bytes | None) -> None:
        if len(self._items) >= self._limit:
            raise asyncio.QueueFull
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def put(self, item: bytes | None) -> None:
        while len(self._items) >= self._limit:
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(putter)
            try:
                await putter
            finally:
                if putter in self._putters:
                    self._putters.remove(putter)
        self.put_nowait(item)

    def get_nowait(self) -> bytes | None:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        putters = self._putters
        if putters:
            putter = putters.pop(0)
            if not putter.done():
                putter.set_result(None)
        return item

    def clear(self) -> None:
        self._items = []
        putters, self._putters = self._putters, None
        for putter in putters or ():
            if not putter.done():
                putter.set_result(None)

    async def get(self) -> bytes | None:
        while not self._items:
            self._getter = getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                self._getter = None
        return self.get_nowait()
