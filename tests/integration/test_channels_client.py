"""Channels through the real Client against the real server: signed posts verified by readers
(a post altered in the server's store is flagged), only admins post (a typed error), a revoked
invite link joins nobody, posts reach subscribers' history once and in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration.channel_kit import clients
from tests.integration.store_inspection import inspector

from tidings.client import Client
from tidings.client.errors import Forbidden, NotFound
from tidings.client.types import MessageAdded, MessageStatus
from tidings.protocol.channels import encode_content


async def wait_until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def texts(client: Client, conv_id: str) -> list[tuple[str, bool]]:
    page = await client.history(conv_id, limit=200)
    return [(m.body, m.verified) for m in page.messages]


@pytest.mark.timeout(120)
async def test_posts_reach_subscribers_once_in_order_and_an_altered_post_is_flagged(
    server: Any, tmp_path: Path
) -> None:
    async with clients(server, tmp_path, "owner", "reader") as (owner, reader):
        channel = await owner.create_channel("Daily news", handle="daily_news", public=True)
        assert channel.is_admin and channel.subscribers == 1
        found = await reader.find_channel("daily_news")
        assert found.id == channel.id and found.role is None
        events = reader.events()
        joined = await reader.join_channel("@daily_news")
        assert joined.role == "subscriber" and joined.subscribers == 2

        sent = [await owner.post(channel.id, f"post {i}") for i in range(5)]
        assert all(m.status is MessageStatus.DELIVERED for m in sent)
        assert [m.seq for m in sent] == [1, 2, 3, 4, 5]

        want = [(f"post {i}", True) for i in range(5)]
        await wait_until(lambda: _eq(texts(reader, channel.id), want), 15, "the live posts")
        added = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for event in events:
                    if isinstance(event, MessageAdded) and event.message.conv_id == channel.id:
                        added.append(event.message.body)
        assert added == [f"post {i}" for i in range(5)], "each post once, in order"

        convs = {c.id: c for c in await reader.conversations()}
        assert convs[channel.id].kind == "channel" and convs[channel.id].subscribers == 2
        assert not convs[channel.id].is_admin
        assert {c.id: c for c in await owner.conversations()}[channel.id].is_admin
        hits = await reader.search("post 3")
        assert [h.message.body for h in hits] == ["post 3"]

        # A subscriber cannot post: a typed error, and nothing is stored.
        with pytest.raises(Forbidden):
            await reader.post(channel.id, "hijack")
        assert ("hijack", True) not in await texts(reader, channel.id)

    # The server's store is altered: a fresh reader flags the post, never shows it as genuine.
    altered = {"content": encode_content("post 1 (altered)")}
    assert inspector(server).update("channel_posts", altered, channel=channel.id, seq=2) == 1
    async with clients(server, tmp_path, "fresh") as (fresh,):
        await fresh.subscribe(channel.id)
        await wait_until(lambda: _len(texts(fresh, channel.id), 5), 15, "the catch-up")
        got = await texts(fresh, channel.id)
        assert got[1] == ("post 1 (altered)", False)
        assert [v for _, v in got] == [True, False, True, True, True]


async def _eq(got: Awaitable[list[tuple[str, bool]]], want: list[tuple[str, bool]]) -> bool:
    return await got == want


async def _len(got: Awaitable[list[tuple[str, bool]]], n: int) -> bool:
    return len(await got) >= n


@pytest.mark.timeout(120)
async def test_private_channel_invites_admins_and_a_revoked_link(
    server: Any, tmp_path: Path
) -> None:
    async with clients(server, tmp_path, "boss", "deputy", "member", "late") as (
        boss,
        deputy,
        member,
        late,
    ):
        channel = await boss.create_channel("Insiders")
        token = await boss.create_invite(channel.id)
        joined = await member.join_channel(f"tidings://join/{token}")
        assert joined.role == "subscriber"
        await deputy.join_channel(token)
        info = await boss.add_channel_admin(channel.id, "deputy")
        assert [a.username for a in info.admins] == ["boss", "deputy"]
        await deputy.channel_info(channel.id)
        post = await deputy.post(channel.id, "from the deputy")
        assert post.seq == 1
        await wait_until(
            lambda: _eq(texts(member, channel.id), [("from the deputy", True)]), 15, "the post"
        )
        page = await boss.channel_subscribers(channel.id)
        assert sorted(s.username for s in page.subscribers) == ["boss", "deputy", "member"]
        with pytest.raises(Forbidden):
            await member.channel_subscribers(channel.id)

        await boss.revoke_invite(channel.id, token)
        with pytest.raises(NotFound):
            await late.join_channel(token)

        # A removed admin's earlier post still verifies; a new one is refused.
        await boss.remove_channel_admin(channel.id, "deputy")
        await member.channel_info(channel.id)
        assert await texts(member, channel.id) == [("from the deputy", True)]
        with pytest.raises(Forbidden):
            await deputy.post(channel.id, "still here?")
