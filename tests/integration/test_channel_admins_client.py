"""Channel admins and the subscriber list through the real Client against the real server:
the owner makes a subscriber an admin and takes it back; typed refusals change nothing (no such
user, not a subscriber, already an admin, not an admin, the owner, an admin who is not the
owner); one subscriber is found among hundreds in one page; a channel takes posts only (no
reactions, edits or deletions for everyone); a post the server refused is posted again by
``retry`` once its author is an admin again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from tests.integration.channel_kit import clients

from tidings.client.errors import ClientError, Forbidden, NotFound
from tidings.client.types import MessageStatus
from tidings.protocol.rest import AccountCreated, CreateAccount


async def subscribe_many(url: str, channel_id: str, names: list[str]) -> list[AccountCreated]:
    """Accounts made over REST (no keys: they only subscribe), each subscribed to the public
    channel ``channel_id``."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        gate = asyncio.Semaphore(8)

        async def one(name: str) -> AccountCreated:
            async with gate:
                body = msgspec.json.encode(CreateAccount(username=name))
                made = await http.post(
                    "/v1/accounts", content=body, headers={"content-type": "application/json"}
                )
                assert made.status_code == 201, made.text
                account = msgspec.json.decode(made.content, type=AccountCreated)
                joined = await http.post(
                    f"/v1/channels/{channel_id}/subscription",
                    json={},
                    headers={"Authorization": f"Bearer {account.token}"},
                )
                assert joined.status_code == 200, joined.text
                return account

        return list(await asyncio.gather(*(one(n) for n in names)))


@pytest.mark.timeout(120)
async def test_the_owner_adds_and_removes_admins_and_refusals_are_typed(
    server: Any, tmp_path: Path
) -> None:
    async with clients(server, tmp_path, "owner", "deputy", "reader", "outsider") as (
        owner,
        deputy,
        reader,
        outsider,
    ):
        channel = await owner.create_channel("Desk", handle="desk", public=True)
        await deputy.join_channel("@desk")
        await reader.join_channel("@desk")

        found = await owner.channel_subscriber(channel.id, "@deputy")
        assert found is not None and (found.username, found.role) == ("deputy", "subscriber")
        owner_row = await owner.channel_subscriber(channel.id, "owner")
        assert owner_row is not None and owner_row.role == "owner"
        assert await owner.channel_subscriber(channel.id, "outsider") is None
        with pytest.raises(NotFound, match="no user @ghost"):
            await owner.channel_subscriber(channel.id, "ghost")
        with pytest.raises(Forbidden):  # the subscriber list is the admins'
            await reader.channel_subscriber(channel.id, "deputy")

        # refusals: nothing changes
        with pytest.raises(ClientError) as refused:
            await owner.add_channel_admin(channel.id, "outsider")
        assert refused.value.code == "not_subscribed"
        with pytest.raises(NotFound):
            await owner.add_channel_admin(channel.id, "ghost")
        with pytest.raises(ClientError) as refused:
            await owner.add_channel_admin(channel.id, "")
        assert refused.value.code == "bad_username"
        with pytest.raises(ClientError) as refused:
            await owner.remove_channel_admin(channel.id, "reader")
        assert refused.value.code == "not_admin"
        with pytest.raises(Forbidden):  # subscribers see no list, change no roles
            await reader.add_channel_admin(channel.id, "deputy")
        info = await owner.channel_info(channel.id)
        assert [a.username for a in info.admins] == ["owner"] and info.subscribers == 3
        assert await owner.channel_subscriber(channel.id, "outsider") is None

        made = await owner.add_channel_admin(channel.id, "@deputy")
        assert [(a.username, a.role) for a in made.admins] == [
            ("owner", "owner"),
            ("deputy", "admin"),
        ]
        assert (stored := owner.channel(channel.id)) is not None
        assert [a.username for a in stored.admins] == ["owner", "deputy"]
        with pytest.raises(ClientError) as refused:
            await owner.add_channel_admin(channel.id, "deputy")
        assert refused.value.code == "already_admin"
        assert (await deputy.channel_info(channel.id)).is_admin
        with pytest.raises(Forbidden):  # an admin posts, only the owner manages admins
            await deputy.add_channel_admin(channel.id, "reader")
        with pytest.raises(Forbidden):  # the owner stays the owner
            await owner.remove_channel_admin(channel.id, "owner")

        kept = await owner.remove_channel_admin(channel.id, "deputy")
        assert [a.username for a in kept.admins] == ["owner"]
        again = await owner.channel_subscriber(channel.id, "deputy")
        assert again is not None and again.role == "subscriber"
        assert not (await deputy.channel_info(channel.id)).is_admin
        del outsider


@pytest.mark.timeout(180)
async def test_one_subscriber_among_hundreds_and_the_pages_hold_them_all(
    server: Any, tmp_path: Path
) -> None:
    async with clients(server, tmp_path, "host") as (host,):
        channel = await host.create_channel("Crowd", handle="crowd", public=True)
        names = [f"fan{i:03d}" for i in range(230)]
        await subscribe_many(server.url, channel.id, names)
        for name in (names[0], names[117], names[-1]):
            found = await host.channel_subscriber(channel.id, name)
            assert found is not None and found.username == name
        listed: list[str] = []
        start: str | None = None
        while True:
            page = await host.channel_subscribers(channel.id, start=start, limit=100)
            listed += [s.username for s in page.subscribers]
            if page.next is None:
                break
            start = page.next
        assert sorted(listed) == sorted([*names, "host"])
        assert (await host.channel_info(channel.id)).subscribers == 231


@pytest.mark.timeout(120)
async def test_a_channel_takes_posts_only_and_a_refused_post_is_retried(
    server: Any, tmp_path: Path
) -> None:
    async with clients(server, tmp_path, "chief", "aide", "follower") as (chief, aide, follower):
        channel = await chief.create_channel("Wire", handle="wire", public=True)
        await aide.join_channel("@wire")
        await follower.join_channel("@wire")
        first = await chief.post(channel.id, "first")
        assert first.seq == 1

        async def follower_has(text: str) -> bool:
            page = await follower.history(channel.id)
            return any(m.body == text for m in page.messages)

        for _ in range(200):
            if await follower_has("first"):
                break
            await asyncio.sleep(0.05)
        got = [m for m in (await follower.history(channel.id)).messages if m.body == "first"]
        assert got, "the follower never got the post"
        for call in (
            follower.react(channel.id, got[0].id, "\U0001f44d"),
            chief.react(channel.id, first.id, "\U0001f44d"),
            chief.edit(first.id, "first, edited"),
            chief.delete_for_everyone(first.id),
        ):
            with pytest.raises(ClientError) as refused:
                await call
            assert refused.value.code == "not_supported"
        assert (await chief.message(first.id)) is not None
        assert (await chief.message(first.id)).body == "first"  # type: ignore[union-attr]

        # the aide was an admin when the app last looked: the server refuses the post
        await chief.add_channel_admin(channel.id, "aide")
        await aide.channel_info(channel.id)
        await chief.remove_channel_admin(channel.id, "aide")
        with pytest.raises(Forbidden):
            await aide.post(channel.id, "from the aide")
        failed = [m for m in (await aide.history(channel.id)).messages if m.body == "from the aide"]
        assert len(failed) == 1 and failed[0].status is MessageStatus.FAILED
        with pytest.raises(ClientError) as refused:
            await aide.retry(first.id)  # not a failed own post
        assert refused.value.code == "not_failed"

        await chief.add_channel_admin(channel.id, "aide")
        await aide.retry(failed[0].id)
        posted = await aide.message(failed[0].id)
        assert posted is not None and posted.status is MessageStatus.DELIVERED
        assert posted.seq == 2
        for _ in range(200):
            if await follower_has("from the aide"):
                break
            await asyncio.sleep(0.05)
        page = await follower.history(channel.id)
        assert [(m.body, m.verified) for m in page.messages] == [
            ("first", True),
            ("from the aide", True),
        ]
