"""Helpers of the end-to-end encryption tests: a recording TCP proxy, device linking, waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.client import Client
from tidings.client.types import ClientEvent


async def wait_until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)


class Events:
    """Collects a client's events in the background."""

    def __init__(self, client: Client) -> None:
        self.items: list[ClientEvent] = []
        self._source = client.events()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for event in self._source:
            self.items.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.items if isinstance(e, kind)]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def body_of(client: Client, message_id: Any) -> str | None:
    message = await client.message(message_id)
    return None if message is None else message.body


async def wait_for_body(client: Client, message_id: Any, body: str, within: float = 30) -> None:
    async def there() -> bool:
        return await body_of(client, message_id) == body

    await wait_until(
        there, within, f"{client.account.username}:{client.account.device_id} to get {body!r}"
    )


async def link(existing: Client, profile: Path, server_url: str, name: str = "second") -> Client:
    """Link a new device to ``existing``'s account through the real provisioning flow."""
    codes: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        Client.link_device(profile, server_url, name, on_code=codes.put_nowait)
    )
    code = await asyncio.wait_for(codes.get(), 20)
    await existing.approve_device(code, name)
    linked = await asyncio.wait_for(task, 30)
    await linked.start()
    await linked.wait_synced(timeout=20)
    return linked


@dataclass
class Recording:
    """Bytes each side sent through the proxy, one entry per TCP connection."""

    from_server: list[bytearray] = field(default_factory=list)
    from_clients: list[bytearray] = field(default_factory=list)


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target_port`` and records every byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.recording = Recording()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        to_server, to_client = bytearray(), bytearray()
        self.recording.from_clients.append(to_server)
        self.recording.from_server.append(to_client)

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    log += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, to_server), pipe(up_reader, writer, to_client))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


def websocket_messages(stream: bytes) -> list[bytes]:
    """The unmasked frame payloads of a client → server WebSocket stream (after the HTTP
    upgrade request), one per frame; nothing when the stream is plain HTTP."""
    head_end = stream.find(b"\r\n\r\n")
    if head_end < 0 or b"upgrade: websocket" not in stream[:head_end].lower():
        return []
    messages: list[bytes] = []
    data = memoryview(stream)[head_end + 4 :]
    while len(data) >= 2:
        masked = data[1] & 0x80
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            length = int.from_bytes(data[2:4], "big")
            offset = 4
        elif length == 127:
            length = int.from_bytes(data[2:10], "big")
            offset = 10
        mask = bytes(data[offset : offset + 4]) if masked else b"\0\0\0\0"
        offset += 4 if masked else 0
        payload = data[offset : offset + length]
        messages.append(bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        data = data[offset + length :]
    return messages


def websocket_payloads(stream: bytes) -> bytes:
    """The stream with its WebSocket frames unmasked (the HTTP part as it is)."""
    messages = websocket_messages(stream)
    if not messages:
        return stream
    head_end = stream.find(b"\r\n\r\n")
    return stream[: head_end + 4] + b"".join(messages)


@contextlib.asynccontextmanager
async def proxy_for(server: Any) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
