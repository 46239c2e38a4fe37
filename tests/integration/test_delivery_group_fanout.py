"""Issue 2, done-when (d): a post to a 1,000-member group reaches every online member.

The 999 other members are made through the REST API and held online by raw WebSocket
connections that speak the protocol frames; the poster is a real :class:`Client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tidings.client import Client
from tidings.client.types import MessageStatus
from tidings.protocol import (
    Ack,
    Batch,
    Envelope,
    Hello,
    Synced,
    Welcome,
    decode_server_frame,
    encode,
)
from tidings.protocol.rest import AccountCreated, CreateAccount

MEMBERS = 1000  # including the poster
CONNECT_CONCURRENCY = 64


async def make_accounts(url: str, names: list[str]) -> list[AccountCreated]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        gate = asyncio.Semaphore(16)

        async def one(name: str) -> AccountCreated:
            async with gate:
                body = msgspec.json.encode(CreateAccount(username=name))
                response = await http.post(
                    "/v1/accounts", content=body, headers={"content-type": "application/json"}
                )
                assert response.status_code == 201, response.text
                return msgspec.json.decode(response.content, type=AccountCreated)

        return list(await asyncio.gather(*(one(n) for n in names)))


class Member:
    """One online member on a raw connection: acks everything, remembers what arrived."""

    def __init__(self, account: AccountCreated) -> None:
        self.account = account
        self.ws: ClientConnection | None = None
        self.arrived: dict[uuid.UUID, float] = {}
        self.synced = asyncio.Event()
        self.got: dict[uuid.UUID, asyncio.Event] = {}
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, ws_url: str) -> None:
        self.ws = await connect(
            ws_url,
            additional_headers={"Authorization": f"Bearer {self.account.token}"},
            compression=None,
            max_size=None,
            open_timeout=30,
        )
        await self.ws.send(encode(Hello(cursors={})))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for data in self.ws:
                assert isinstance(data, bytes)
                frame = decode_server_frame(data)
                envelopes: list[Envelope] = []
                if isinstance(frame, Envelope):
                    envelopes = [frame]
                elif isinstance(frame, Batch):
                    envelopes = frame.envelopes
                elif isinstance(frame, Synced):
                    self.synced.set()
                elif isinstance(frame, Welcome):
                    continue
                if envelopes:
                    now = time.perf_counter()
                    for env in envelopes:
                        self.arrived.setdefault(env.id, now)
                    last = envelopes[-1]
                    await self.ws.send(encode(Ack(upto={last.conv: last.seq})))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_post_reaches_every_online_member_of_a_1000_member_group(
    server: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    owner = await Client.create_account(tmp_path / "owner", server.url, "owner")
    names = [f"member{i:04d}" for i in range(MEMBERS - 1)]
    accounts = await make_accounts(server.url, names)
    members = [Member(a) for a in accounts]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def bring_online(member: Member) -> None:
        async with gate:
            await member.connect(server.ws_url)
            await asyncio.wait_for(member.synced.wait(), 30)

    try:
        await asyncio.gather(*(bring_online(m) for m in members))
        await owner.start()
        await owner.wait_synced(timeout=30)
        group = await owner.create_group("everyone", names)
        assert len(group.members) == MEMBERS

        post = await owner.send_text(group.id, "hello, all one thousand of you")
        posted = time.perf_counter()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(post.id in m.arrived for m in members):
                break
            await asyncio.sleep(0.05)
        missing = [m.account.username for m in members if post.id not in m.arrived]
        assert not missing, f"{len(missing)} online members never got the post: {missing[:5]}"
        slowest = max(m.arrived[post.id] for m in members) - posted
        assert slowest < 30

        # Everyone acked, so the post counts as delivered for the poster.
        deadline = time.monotonic() + 30
        status = MessageStatus.SENDING
        while time.monotonic() < deadline:
            message = await owner.message(post.id)
            assert message is not None
            status = message.status
            if status in (MessageStatus.DELIVERED, MessageStatus.READ):
                break
            await asyncio.sleep(0.1)
        assert status == MessageStatus.DELIVERED
    finally:
        await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
        await owner.close()
    assert time.monotonic() - started < 120
