"""Helpers of the channel tests: raw-protocol channel readers that keep a cursor like a client
does, and the REST calls they make (the nats-server is :mod:`tests.standins.nats_server`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from tidings.client import Client
from tidings.protocol import decode_server_frame
from tidings.protocol.channels import encode_content
from tidings.protocol.frames import ChannelPosted


@contextlib.asynccontextmanager
async def clients(server: Any, tmp_path: Path, *names: str) -> AsyncIterator[list[Client]]:
    """Real clients with new accounts ``names``, started and synced; closed at the end."""
    made = [await Client.create_account(tmp_path / n, server.url, n) for n in names]
    try:
        for c in made:
            await c.start()
        for c in made:
            await c.wait_synced(timeout=20)
        yield made
    finally:
        for c in made:
            await c.close()


#: A stand-in signature: the server never checks signatures (clients do).
FAKE_SIGNATURE = os.urandom(64)


async def create_channel(
    http: httpx.AsyncClient, headers: dict[str, str], title: str, **fields: Any
) -> dict[str, Any]:
    r = await http.post("/v1/channels", json={"title": title, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def post(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    channel: str,
    text: str,
    post_id: uuid.UUID | None = None,
) -> httpx.Response:
    body = {
        "id": str(post_id or uuid.uuid4()),
        "ts": int(time.time() * 1000),
        "content": base64.b64encode(encode_content(text)).decode(),
        "signature": base64.b64encode(FAKE_SIGNATURE).decode(),
    }
    return await http.post(f"/v1/channels/{channel}/posts", json=body, headers=headers)


class Reader:
    """One subscriber device: keeps a cursor per channel, stores a post only if it is the next
    one, fetches gaps over REST. Counts live copies per seq (to find duplicates on the wire)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.cursor = 0
        self.stored: list[int] = []
        self.live: dict[int, int] = {}

    def apply(self, seqs: list[int]) -> None:
        for seq in sorted(seqs):
            if seq == self.cursor + 1:
                self.stored.append(seq)
                self.cursor = seq

    def on_frame(self, data: bytes) -> int | None:
        """A live frame; returns a seq beyond a gap, if there is one (fetch it)."""
        frame = decode_server_frame(data)
        if not isinstance(frame, ChannelPosted) or frame.post.channel != self.channel:
            return None
        seq = frame.post.seq
        self.live[seq] = self.live.get(seq, 0) + 1
        if seq > self.cursor + 1:
            return seq
        self.apply([seq])
        return None

    async def catch_up(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        while True:
            r = await http.get(
                f"/v1/channels/{self.channel}/posts",
                params={"after": self.cursor, "limit": 200},
                headers=headers,
            )
            assert r.status_code == 200, r.text
            page = r.json()
            self.apply([p["seq"] for p in page["posts"]])
            if self.cursor >= page["head"] or not page["posts"]:
                return


async def drain(ws: Any, reader: Reader, until: int, wait: float) -> None:
    """Read live frames until the reader's cursor reaches ``until`` (gaps are left to the
    caller) or ``wait`` seconds pass without a frame."""
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError, ConnectionClosed):
        while reader.cursor < until:
            data = await asyncio.wait_for(ws.recv(), wait)
            if isinstance(data, bytes):
                reader.on_frame(data)
