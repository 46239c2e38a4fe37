"""A bot's burst through the real Client and the real server: send_texts and send_text in a
loop, sealed in bursts, past the server's send burst (so some are throttled and resent).
Every text arrives once, in the order written, and every one ends sent; a burst makes one
ConversationUpdated per conversation, not one per message."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client, ClientError
from tidings.client.types import (
    ClientEvent,
    ConversationUpdated,
    Message,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
)

#: texts in the burst: more than the server's default send burst of one device (200)
BURST = 260


async def _history(client: Client, conv_id: str) -> list[str]:
    bodies: list[str] = []
    before = None
    while True:
        page = await client.history(conv_id, before, 100)
        bodies[:0] = [m.body for m in page.messages if m.kind == "text"]
        if page.before is None:
            return bodies
        before = page.before


@pytest.mark.timeout(180)
async def test_a_bots_burst_arrives_once_in_order_and_ends_sent(
    server: Any, tmp_path: Path
) -> None:
    bot = await Client.create_account(tmp_path / "bot", server.url, "bot")
    peer = await Client.create_account(tmp_path / "peer", server.url, "peer")
    events: list[ClientEvent] = []
    source = bot.events()

    async def pump() -> None:
        async for event in source:
            events.append(event)

    task = asyncio.create_task(pump())
    try:
        await bot.start()
        await peer.start()
        await bot.wait_synced(timeout=20)
        await peer.wait_synced(timeout=20)
        conv = (await bot.open_direct("peer")).id
        bodies = [f"reading {i}: 21.{i % 10} °C" for i in range(BURST)]
        with pytest.raises(ClientError) as empty:  # all or none: nothing of this is stored
            await bot.send_texts(conv, ["fine", "  "])
        assert empty.value.code == "empty_message"
        ids: list[uuid.UUID] = []
        for start in (0, 100):
            stored = await bot.send_texts(conv, bodies[start : start + 100])
            assert [m.body for m in stored] == bodies[start : start + 100]
            assert all(m.status is MessageStatus.SENDING and m.is_own for m in stored)
            ids += [m.id for m in stored]
        for body in bodies[200:]:
            ids.append((await bot.send_text(conv, body)).id)
        assert len(set(ids)) == BURST
        assert await _history(bot, conv) == bodies  # in the store as written, at once

        deadline = time.monotonic() + 120
        while True:
            statuses = [m.status for m in [await bot.message(i) for i in ids] if m is not None]
            done = [s for s in statuses if s is not MessageStatus.SENDING]
            if len(done) == BURST:
                break
            assert time.monotonic() < deadline, f"{len(done)} of {BURST} accepted"
            await asyncio.sleep(0.2)
        assert all(s is not MessageStatus.FAILED for s in statuses)
        sent = [await bot.message(i) for i in ids]
        seqs = [m.seq for m in sent if m is not None]
        assert seqs == sorted(seqs) and len(set(seqs)) == BURST  # server order = written order

        deadline = time.monotonic() + 60
        while (got := await _history(peer, conv)) != bodies:
            assert len(got) <= BURST and got == bodies[: len(got)], "duplicate or out of order"
            assert time.monotonic() < deadline, f"the peer has {len(got)} of {BURST}"
            await asyncio.sleep(0.2)

        await asyncio.sleep(0.1)  # the loop turns: coalesced conversation events go out
        mine = set(ids)
        added = [e.message.id for e in events if isinstance(e, MessageAdded)]
        assert [i for i in added if i in mine] == ids  # one MessageAdded each, in order
        assert {e.message.id for e in events if isinstance(e, MessageUpdated)} >= mine
        # each event shows the message as the store reads it at that point: added, then sent
        final = {m.id: m for m in sent if m is not None}
        for event in events:
            if isinstance(event, MessageAdded) and event.message.id in mine:
                was = final[event.message.id]
                assert event.message == replace(was, seq=None, status=MessageStatus.SENDING)
        first_updates: dict[uuid.UUID, Message] = {}
        for event in events:
            if isinstance(event, MessageUpdated) and event.message.id in mine:
                first_updates.setdefault(event.message.id, event.message)
        for message_id, shown in first_updates.items():
            assert shown == replace(final[message_id], status=shown.status)
            assert shown.status is not MessageStatus.SENDING
        updates = [e.conversation for e in events if isinstance(e, ConversationUpdated)]
        assert updates and len(updates) < BURST
        last = updates[-1].last_message
        assert last is not None and last.id == ids[-1]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bot.close()
        await peer.close()
