"""Issue 2, done-when (b): the server is SIGKILLed in the middle of a 2,000-message two-way
exchange and restarted on the same data directory: nothing lost, nothing duplicated, all
delivered, and both sides hold the same history in the same seq order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client
from tidings.client.types import MessageStatus

PER_SIDE = 1000
#: the server is first SIGKILLed once this part of the exchange is acknowledged, ...
CRASH_FIRST_AT = 0.15
#: ... then again this many acknowledgements after each restart, up to CRASHES kills
CRASH_AFTER_RESTART = 40
CRASHES = 4
DONE = {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ}


async def send_paced(client: Client, conv_id: str, name: str, ids: list[uuid.UUID]) -> None:
    """Send PER_SIDE messages, a few at a time, so the exchange takes a few seconds."""
    for i in range(PER_SIDE):
        message = await client.send_text(conv_id, f"{name} says {i:04d}")
        ids.append(message.id)
        if i % 5 == 4:
            await asyncio.sleep(0.025)


@pytest.mark.timeout(360)
async def test_server_sigkill_mid_exchange_loses_and_duplicates_nothing(
    server: Any, tmp_path: Path, recorder: Any, wait_until: Any, full_history: Any
) -> None:
    alice = await Client.create_account(tmp_path / "alice", server.url, "alice")
    bob = await Client.create_account(tmp_path / "bob", server.url, "bob")
    try:
        async with recorder(alice) as alice_events, recorder(bob) as bob_events:
            await alice.start()
            await bob.start()
            await alice.wait_synced(timeout=20)
            await bob.wait_synced(timeout=20)
            conv = await alice.open_direct("bob")
            assert (await bob.open_direct("alice")).id == conv.id

            alice_ids: list[uuid.UUID] = []
            bob_ids: list[uuid.UUID] = []
            senders = [
                asyncio.create_task(send_paced(alice, conv.id, "alice", alice_ids)),
                asyncio.create_task(send_paced(bob, conv.id, "bob", bob_ids)),
            ]

            # Crash while the exchange is in full flow: once a part of it is acknowledged, then
            # again soon after each restart, while the server works through the piled-up
            # outboxes. Each time, wait (briefly) for a moment when the peer already has a
            # message whose sender has not seen it accepted: the server stored it, and the
            # resend after the crash must not store it again.
            def accepted() -> int:
                return sum(
                    1
                    for events, ids in ((alice_events, alice_ids), (bob_events, bob_ids))
                    for i in ids
                    if events.status.get(i) in DONE
                )

            async def in_limbo() -> bool:
                for ids, sender_events, peer_events in (
                    (alice_ids, alice_events, bob_events),
                    (bob_ids, bob_events, alice_events),
                ):
                    for message_id in ids[-200:]:
                        if (
                            message_id in peer_events.added
                            and sender_events.status.get(message_id) == MessageStatus.SENDING
                        ):
                            return True
                return False

            kills = 0
            threshold = int(CRASH_FIRST_AT * 2 * PER_SIDE)
            for _ in range(CRASHES):

                async def far_enough(threshold: int = threshold) -> bool:
                    return accepted() >= threshold

                await wait_until(far_enough, 120, f"{threshold} accepted messages", every=0.005)
                with contextlib.suppress(AssertionError):  # crash anyway after 2 s
                    await wait_until(in_limbo, 2, "a message in limbo", every=0.001)
                if accepted() >= 2 * PER_SIDE:
                    break  # the outboxes drained before the next crash point
                server.kill()
                kills += 1
                await asyncio.sleep(0.3)  # clients notice, messages pile up in the outboxes
                await asyncio.to_thread(server.start)
                threshold = min(accepted() + CRASH_AFTER_RESTART, 2 * PER_SIDE)
            assert kills >= 1, "the exchange finished before the first crash"
            await asyncio.gather(*senders)
            assert len(alice_ids) == len(bob_ids) == PER_SIDE

            async def everything_delivered() -> bool:
                for client, ids in ((alice, alice_ids), (bob, bob_ids)):
                    for message_id in ids:
                        message = await client.message(message_id)
                        if message is None or message.status not in (
                            MessageStatus.DELIVERED,
                            MessageStatus.READ,
                        ):
                            return False
                return True

            await wait_until(everything_delivered, 180, "all 2,000 messages to be delivered")
            await asyncio.sleep(0.5)  # let the recorders take every pending event

            alice_history = await full_history(alice, conv.id, page_size=250)
            bob_history = await full_history(bob, conv.id, page_size=250)
        expected = set(alice_ids) | set(bob_ids)
        assert len(expected) == 2 * PER_SIDE
        for side, history, events in (
            ("alice", alice_history, alice_events),
            ("bob", bob_history, bob_events),
        ):
            texts = [m for m in history if m.kind == "text"]
            ids = [m.id for m in texts]
            assert len(ids) == len(set(ids)), f"{side} holds duplicates"
            assert set(ids) == expected, (
                f"{side} lost {len(expected - set(ids))} and has "
                f"{len(set(ids) - expected)} unknown messages"
            )
            seqs = [m.seq for m in history]
            assert None not in seqs
            assert seqs == sorted(set(seqs)), f"{side}'s history is not in seq order"
            # the conversation's seqs are gapless
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{side} has seq gaps"
            # the peer's messages were shown exactly once
            peer = bob_ids if side == "alice" else alice_ids
            assert all(events.added[i] == 1 for i in peer), f"{side} showed a message twice"
            # each sender's messages keep their order
            for name in ("alice", "bob"):
                bodies = [m.body for m in texts if m.body.startswith(f"{name} says")]
                assert bodies == [f"{name} says {i:04d}" for i in range(PER_SIDE)]
        # both sides agree on every message's place in the conversation
        assert [(m.id, m.seq) for m in alice_history] == [(m.id, m.seq) for m in bob_history]
    finally:
        await alice.close()
        await bob.close()
