"""Helpers of the vault tests: two chatting accounts, waiting, whole histories."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.types import Message

PASSPHRASE = "violet tundra parsnip 91 ocelot lantern"


async def wait_texts(client: Client, conv_id: str, count: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        page = await client.history(conv_id, limit=count + 10)
        texts = [m for m in page.messages if m.kind == "text" and m.seq is not None]
        if len(texts) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(texts)} of {count} messages arrived")
        await asyncio.sleep(0.1)


async def everything(client: Client, conv_id: str, limit: int = 50) -> list[Message]:
    """The whole history by paging back with the public API (as the app scrolls)."""
    out: list[Message] = []
    before: int | None = None
    for _ in range(10_000):
        page = await client.history(conv_id, before=before, limit=limit)
        assert len(page.messages) <= limit
        out = list(page.messages) + out
        if page.before is None:
            return out
        before = page.before
    raise AssertionError("paging never reached the start")


def comparable(messages: list[Message]) -> list[tuple[Any, ...]]:
    return [
        (m.id, m.seq, m.sender_id, m.kind, m.body, m.reactions, m.status, m.is_own, m.created_at)
        for m in messages
        if m.seq is not None
    ]


async def pair(tmp: Path, url: str, config: ClientConfig | None = None) -> tuple[Client, Client]:
    alice = await Client.create_account(tmp / "alice", url, "alice", config=config)
    bob = await Client.create_account(tmp / "bob", url, "bob", config=config)
    await alice.start()
    await bob.start()
    await alice.wait_synced(20)
    await bob.wait_synced(20)
    return alice, bob
