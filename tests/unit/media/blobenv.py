"""Test backends for the blob store suite: the local store behind uvicorn, S3 on moto's server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn

from tidings.server.media.handlers import BlobRequest, handle_blob_request
from tidings.server.media.local import LocalBlobStore

MiB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def asgi_app(store: LocalBlobStore) -> Any:
    """The thin wrapper a framework needs around :func:`handle_blob_request`."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = dict(parse_qsl(scope["query_string"].decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    return

        blob_id = scope["path"].rsplit("/", 1)[-1]
        request = BlobRequest(scope["method"], blob_id, query, headers, body())
        response = await handle_blob_request(store, request)
        raw_headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        async for chunk in response.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


@contextlib.contextmanager
def serve(app: Any, port: int) -> Iterator[None]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Backend:
    name: str
    store: Any
    clock: FakeClock
    root: Path | None = None
    s3: Any = None
    bucket: str = ""

    def stored_bytes(self, blob_id: str) -> bytes:
        if self.name == "local":
            return self.store.data_path(blob_id).read_bytes()  # type: ignore[no-any-return]
        obj = self.s3.get_object(Bucket=self.bucket, Key=f"tidings/blobs/{blob_id}")
        return obj["Body"].read()  # type: ignore[no-any-return]


async def cut_put(url: str, data: bytes, send: int) -> None:
    """PUT announcing ``len(data)`` bytes but sending only ``send`` of them, then hang up."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = (
        f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    writer.write(head.encode() + data[:send])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    del reader
