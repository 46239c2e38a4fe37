"""The real Client against the real server process: chat, statuses, groups, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client, ClientError, ServerRefused
from tidings.client.types import (
    ClientEvent,
    ConnectionState,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
)


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

    def added(self) -> Counter[uuid.UUID]:
        return Counter(e.message.id for e in self.items if isinstance(e, MessageAdded))

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def clients(server: Any, tmp_path: Path, *names: str) -> AsyncIterator[list[Client]]:
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


async def status_of(client: Client, message_id: uuid.UUID) -> MessageStatus | None:
    message = await client.message(message_id)
    return None if message is None else message.status


@pytest.mark.timeout(120)
async def test_two_clients_chat_and_statuses_reach_read(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "alice", "bob") as (alice, bob):
        bob_events = Events(bob)
        alice_events = Events(alice)
        conv = await alice.open_direct("bob")
        assert conv.kind == "direct" and conv.title == "bob"
        assert (await alice.open_direct("bob")).id == conv.id

        hello = await alice.send_text(conv.id, "hello bob")
        assert hello.status is MessageStatus.SENDING and hello.seq is None and hello.is_own
        assert hello.id.version == 7  # time-ordered ids, as send_texts makes them

        async def bob_has_it() -> bool:
            return await bob.message(hello.id) is not None

        await wait_until(bob_has_it, 20, "bob to receive the message")
        got = await bob.message(hello.id)
        assert got is not None and got.body == "hello bob" and got.sender_name == "alice"
        assert not got.is_own

        async def delivered() -> bool:
            return await status_of(alice, hello.id) is MessageStatus.DELIVERED

        await wait_until(delivered, 20, "delivered")
        bob_conv = await bob.conversation(conv.id)
        assert bob_conv.title == "alice" and bob_conv.unread == 1
        assert bob_conv.last_message is not None and bob_conv.last_message.id == hello.id

        reply = await bob.send_text(conv.id, "hi alice", reply_to=hello.id)
        assert reply.reply_preview == "alice: hello bob"
        await bob.mark_read(conv.id)
        assert (await bob.conversation(conv.id)).unread == 0

        async def read() -> bool:
            return await status_of(alice, hello.id) is MessageStatus.READ

        await wait_until(read, 20, "read")

        async def alice_has_reply() -> bool:
            return await alice.message(reply.id) is not None

        await wait_until(alice_has_reply, 20, "alice to receive the reply")
        await alice.react(conv.id, reply.id, "👍")

        async def reacted() -> bool:
            message = await bob.message(reply.id)
            return message is not None and message.reactions == (("👍", ("alice",)),)

        await wait_until(reacted, 20, "bob to see alice's reaction")
        await alice.react(conv.id, reply.id, "👍", remove=True)

        async def unreacted() -> bool:
            message = await bob.message(reply.id)
            return message is not None and message.reactions == ()

        await wait_until(unreacted, 20, "bob to see the reaction taken back")

        page = await alice.history(conv.id)
        texts = [m for m in page.messages if m.kind == "text"]
        assert [m.id for m in texts] == [hello.id, reply.id]
        assert page.before is None
        hits = await bob.search("hello")
        assert [h.message.id for h in hits] == [hello.id]
        assert "[hello]" in hits[0].snippet

        # shown once, statuses only forward
        assert bob_events.added()[hello.id] == 1
        ranks = {
            MessageStatus.SENDING: 0,
            MessageStatus.SENT: 1,
            MessageStatus.DELIVERED: 2,
            MessageStatus.READ: 3,
        }
        seen = [
            ranks[e.message.status]
            for e in alice_events.items
            if isinstance(e, MessageAdded | MessageUpdated) and e.message.id == hello.id
        ]
        assert seen == sorted(seen) and seen[-1] == 3
        listing = await alice.conversations()
        assert [c.id for c in listing] == [conv.id]
        await bob_events.stop()
        await alice_events.stop()


@pytest.mark.timeout(120)
async def test_group_read_needs_every_member(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "alice", "bob", "carol") as (alice, bob, carol):
        group = await alice.create_group("friends", ["bob", "carol"])
        assert group.kind == "group" and group.title == "friends" and group.is_admin
        assert {m.username for m in group.members} == {"alice", "bob", "carol"}
        message = await alice.send_text(group.id, "hi all")

        async def everyone_has_it() -> bool:
            return all([await c.message(message.id) is not None for c in (bob, carol)])

        await wait_until(everyone_has_it, 20, "both members to receive")

        async def delivered() -> bool:
            return await status_of(alice, message.id) is MessageStatus.DELIVERED

        await wait_until(delivered, 20, "delivered to both")
        await bob.mark_read(group.id)
        await asyncio.sleep(0.5)
        assert await status_of(alice, message.id) is MessageStatus.DELIVERED  # carol has not read
        await carol.mark_read(group.id)

        async def read() -> bool:
            return await status_of(alice, message.id) is MessageStatus.READ

        await wait_until(read, 20, "read by everyone")

        # membership changes arrive as system messages and refresh the member list
        await alice.remove_member(group.id, "carol")

        async def bob_sees_two() -> bool:
            conv = await bob.conversation(group.id)
            return {m.username for m in conv.members} == {"alice", "bob"}

        await wait_until(bob_sees_two, 20, "bob to see carol removed")
        history = await bob.history(group.id)
        assert history.messages[-1].kind == "system"
        assert history.messages[-1].body == "alice removed carol"

        async def carol_left() -> bool:
            return group.id not in [c.id for c in await carol.conversations()]

        await wait_until(carol_left, 20, "carol to lose the group")
        # carol's message is refused for good: failed, and a retry fails again
        refused = await carol.send_text(group.id, "am I still here?")

        async def failed() -> bool:
            return await status_of(carol, refused.id) is MessageStatus.FAILED

        await wait_until(failed, 20, "carol's message to fail")
        failed_message = await carol.message(refused.id)
        assert failed_message is not None and failed_message.fail_reason == "not_member"
        await carol.retry(refused.id)
        assert await status_of(carol, refused.id) is MessageStatus.SENDING
        await wait_until(failed, 20, "the retry to fail again")
        with pytest.raises(ClientError):
            await carol.retry(message.id)  # not a failed own message
        with pytest.raises(ServerRefused):
            await bob.add_members(group.id, ["carol"])  # bob is no admin
        await bob.leave_group(group.id)
        assert group.id not in [c.id for c in await bob.conversations()]


@pytest.mark.timeout(120)
async def test_server_restart_resends_the_outbox_exactly_once(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        first = await alice.send_text(conv.id, "before")

        async def sent() -> bool:
            return await status_of(alice, first.id) is not MessageStatus.SENDING

        await wait_until(sent, 20, "the first message to be accepted")
        bob_events = Events(bob)
        server.stop()

        async def offline() -> bool:
            return alice.connection.state is not ConnectionState.ONLINE

        await wait_until(offline, 20, "alice to notice the server is gone")
        queued = [await alice.send_text(conv.id, f"while down {i}") for i in range(5)]
        assert {await status_of(alice, m.id) for m in queued} == {MessageStatus.SENDING}
        server.start()
        await alice.wait_synced(timeout=30)

        async def bob_has_all() -> bool:
            return all([await bob.message(m.id) is not None for m in queued])

        await wait_until(bob_has_all, 30, "bob to receive the queued messages")
        await asyncio.sleep(0.5)
        assert [bob_events.added()[m.id] for m in queued] == [1] * 5
        texts = [m for m in (await bob.history(conv.id)).messages if m.kind == "text"]
        assert [m.body for m in texts] == ["before"] + [f"while down {i}" for i in range(5)]
        await bob_events.stop()


@pytest.mark.timeout(120)
async def test_outbox_survives_closing_and_reopening(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "bob") as (bob,):
        alice = await Client.create_account(tmp_path / "alice", server.url, "alice")
        await alice.start()
        await alice.wait_synced(timeout=20)
        conv = await alice.open_direct("bob")
        server.stop()
        queued = [await alice.send_text(conv.id, f"queued {i}") for i in range(3)]
        await alice.close()
        server.start()

        alice = await Client.open(tmp_path / "alice")
        try:
            page = await alice.history(conv.id)
            assert [m.status for m in page.messages if m.kind == "text"] == [
                MessageStatus.SENDING
            ] * 3
            await alice.start()

            async def bob_has_all() -> bool:
                return all([await bob.message(m.id) is not None for m in queued])

            await wait_until(bob_has_all, 30, "bob to receive the queued messages")
            texts = [m for m in (await alice.history(conv.id)).messages if m.kind == "text"]
            assert [m.id for m in texts] == [m.id for m in queued]  # no second local row
            assert all(m.seq is not None for m in texts)
        finally:
            await alice.close()


async def test_errors(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "alice") as (alice,):
        assert (tmp_path / "alice" / "token").stat().st_mode & 0o777 == 0o600
        with pytest.raises(ServerRefused) as refused:
            await Client.create_account(tmp_path / "again", server.url, "alice")
        assert refused.value.code == "username_taken"
        with pytest.raises(ClientError):
            await alice.open_direct("nobody")
        with pytest.raises(ClientError) as exc:
            await alice.safety_number("alice")
        assert exc.value.code == "not_available"
        with pytest.raises(ClientError):
            await Client.create_account(tmp_path / "alice", server.url, "other")


@pytest.mark.timeout(120)
async def test_background_closes_and_foreground_catches_up(server: Any, tmp_path: Path) -> None:
    async with clients(server, tmp_path, "alice", "bob") as (alice, bob):
        conv = await alice.open_direct("bob")
        await bob.background()
        assert bob.connection.state is ConnectionState.OFFLINE
        message = await alice.send_text(conv.id, "while you were away")
        await asyncio.sleep(0.5)
        assert await bob.message(message.id) is None
        await bob.foreground()
        await bob.wait_synced(timeout=20)

        async def arrived() -> bool:
            return await bob.message(message.id) is not None

        await wait_until(arrived, 20, "bob to catch up after foreground")
