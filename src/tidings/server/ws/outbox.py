"""The bounded frame queue of one connection."""

from __future__ import annotations

import asyncio


class Outbox:
    """The bounded frame queue of one connection, for one consumer (the pump). Lighter than
    :class:`asyncio.Queue` (three deques of some 760 bytes each): an idle connection holds an
    empty list and nothing else. ``None`` tells the pump to close the socket.

    Bounded twice: at most ``limit`` frames and at most ``byte_limit`` bytes of them (a frame
    always fits into an empty outbox, whatever its size)."""

    __slots__ = ("_byte_limit", "_bytes", "_getter", "_items", "_limit", "_putters")

    def __init__(self, limit: int, byte_limit: int | None = None) -> None:
        self._items: list[bytes | None] = []
        self._limit = limit
        self._byte_limit = byte_limit if byte_limit is not None else 1 << 62
        #: bytes of the frames queued now
        self._bytes = 0
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def nbytes(self) -> int:
        """Bytes of the frames queued now."""
        return self._bytes

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._limit or self._bytes >= self._byte_limit

    def fits(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may be queued now."""
        items = self._items
        if len(items) >= self._limit:
            return False
        return not items or self._bytes + size <= self._byte_limit

    def put_nowait(self, item: bytes | None) -> None:
        size = 0 if item is None else len(item)
        if not self.fits(size):
            raise asyncio.QueueFull
        self._items.append(item)
        self._bytes += size
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def put(self, item: bytes | None) -> None:
        while not self.fits(0 if item is None else len(item)):
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
        if item is not None:
            self._bytes -= len(item)
        putters = self._putters
        if putters:
            putter = putters.pop(0)
            if not putter.done():
                putter.set_result(None)
        return item

    def take_ready(self, byte_limit: int) -> list[bytes]:
        """Take the frames queued now, up to the first ``None`` and, beyond the first frame,
        up to ``byte_limit`` bytes in all: the burst the pump writes at once."""
        items = self._items
        taken: list[bytes] = []
        size = 0
        for item in items:
            if item is None or (taken and size + len(item) > byte_limit):
                break
            taken.append(item)
            size += len(item)
        if taken:
            del items[: len(taken)]
            self._bytes -= size
            putters = self._putters
            while putters:
                putter = putters.pop(0)
                if not putter.done():
                    putter.set_result(None)
        return taken

    def put_back(self, frames: list[bytes]) -> None:
        """Return frames that :meth:`take_ready` took (and that could not be written) to the
        front of the queue, in their order."""
        self._items[:0] = frames
        self._bytes += sum(len(frame) for frame in frames)

    def clear(self) -> None:
        self._items = []
        self._bytes = 0
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
