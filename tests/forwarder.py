"""A TCP forwarder on 127.0.0.1 in front of a test server, for proxies that watch or cut what
passes. A subclass implements :meth:`Forwarder.relay` for one accepted connection; the base
opens the upstream connection, tracks the tasks and aborts both sides when done or stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class Forwarder:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Move bytes between the client (``reader``/``writer``) and the server (``up_*``)."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await self.relay(reader, writer, up_reader, up_writer)
        except (OSError, ConnectionError):
            pass
        finally:
            for side in (writer, up_writer):
                side.transport.abort()
            self._tasks.discard(task)
