"""Sends and Acks that reach the store together are written together (the SQLite writer runs
the ones queued back to back as one batch): each keeps the outcome it would have alone. Seqs
stay gapless and in order, a resent id gets its original seq, a refused Send writes nothing
and does not disturb its neighbours, the quota counts the batch's own messages, and a block
or a new device made after messages flowed applies to the next one."""

from __future__ import annotations

import asyncio
import uuid

from tidings.protocol import Accepted, ErrorCode, Rejected, Send


def send(world, device, conv: str, msg_id: uuid.UUID | None = None, payload: bytes = b"x"):
    return world.engine.send(device, Send(id=msg_id or uuid.uuid4(), conv=conv, payload=payload))


async def test_sends_queued_together_keep_their_own_outcomes(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    ab, _ = await world.engine.create_direct(alice, "bob")
    group = await world.engine.create_group(alice, "g", ["bob"])
    await world.second_device(bob)
    reused, stolen = uuid.uuid4(), uuid.uuid4()
    await send(world, bob, group.id, stolen)  # bob's message: nobody else may take its id
    answers = await asyncio.gather(
        send(world, alice, ab.id),
        send(world, alice, group.id, reused),
        send(world, bob, ab.id),
        send(world, carol, group.id),  # not a member
        send(world, alice, group.id, stolen),  # someone else's id
        send(world, alice, "cmissing"),
        send(world, alice, group.id, reused),  # the same message again, in the same batch
        send(world, bob, group.id),
        send(world, alice, ab.id),
    )
    accepted = [a for a in answers if isinstance(a, Accepted)]
    refused = [a.code for a in answers if isinstance(a, Rejected)]
    assert refused == [ErrorCode.NOT_MEMBER, ErrorCode.CONFLICT, ErrorCode.NOT_FOUND]
    assert answers[1].seq == answers[6].seq  # one message, one seq
    by_conv: dict[str, list[int]] = {}
    for answer in accepted:
        if answer is not answers[6]:
            by_conv.setdefault(answer.conv, []).append(answer.seq)
    # Gapless and in the order sent: the direct one from 2 (1 is its creation), the group
    # from 3 (creation, then bob's first message).
    assert by_conv == {ab.id: [2, 3, 4], group.id: [3, 4]}
    assert [e.seq for e in await world.store.envelopes(group.id, 0, 100)] == [1, 2, 3, 4]
    # Every message is queued for every device but the one that sent it (bob's second device
    # was linked after the conversations were made).
    pending_bob2 = await world.store.pending(bob.account_id, 2, ("", 0), 100)
    assert [(e.conv, e.seq) for e in pending_bob2] == sorted(
        [(ab.id, s) for s in (2, 3, 4)] + [(group.id, s) for s in (2, 3, 4)]
    )
    pending_alice = await world.store.pending(alice.account_id, 1, ("", 0), 100)
    assert [(e.conv, e.seq) for e in pending_alice] == sorted(
        [(ab.id, s) for s in (1, 3)] + [(group.id, s) for s in (1, 2, 4)]
    )


async def test_the_quota_counts_the_messages_of_the_same_batch(world):
    alice = await world.account("alice")
    await world.account("bob")
    ab, _ = await world.engine.create_direct(alice, "bob")
    world.engine.quota_bytes = 250
    answers = await asyncio.gather(
        *(send(world, alice, ab.id, payload=b"p" * 100) for _ in range(4))
    )
    assert [type(a) for a in answers] == [Accepted, Accepted, Rejected, Rejected]
    assert {a.code for a in answers if isinstance(a, Rejected)} == {ErrorCode.QUOTA_EXCEEDED}
    assert await world.store.stored_bytes(alice.account_id) == 200
    assert [a.seq for a in answers if isinstance(a, Accepted)] == [2, 3]


async def test_a_block_or_a_new_device_after_messages_flowed_applies_to_the_next(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    ab, _ = await world.engine.create_direct(alice, "bob")
    assert isinstance(await send(world, bob, ab.id), Accepted)  # what the writer keeps is read
    await world.store.block(alice.account_id, bob.account_id, 1)
    blocked = await send(world, bob, ab.id)
    assert isinstance(blocked, Accepted)
    assert await world.pending(alice) == [(ab.id, 1), (ab.id, 2)]
    await world.store.unblock(alice.account_id, bob.account_id)
    again = await send(world, bob, ab.id)
    assert await world.pending(alice) == [(ab.id, 1), (ab.id, 2), (ab.id, again.seq)]
    alice2 = await world.second_device(alice)
    later = await send(world, bob, ab.id)
    assert await world.pending(alice2) == [(ab.id, later.seq)]
    assert await world.store.remove_device(alice.account_id, alice2.device_id)
    last = await send(world, bob, ab.id)
    assert (ab.id, last.seq) in await world.pending(alice)
    assert await world.count("pending", account_id=alice.account_id, device_id=2) == 0


async def test_acks_queued_together_raise_each_watermark_once_and_tell_everyone(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    bob2 = await world.second_device(bob)
    for _ in range(2):
        assert isinstance(await send(world, alice, group.id), Accepted)  # seqs 2 and 3
    a, b1 = await world.online(alice), await world.online(bob)
    await asyncio.gather(
        world.engine.ack(bob, {group.id: 2}),
        world.engine.ack(bob2, {group.id: 3}),
        world.engine.ack(carol, {group.id: 3}),
        world.engine.ack(carol, {group.id: 2}),  # lower: moves nothing
        world.engine.ack(alice, {group.id: 3}),
    )
    marks = {w.account: (w.delivered, w.read) for w in await world.store.watermarks(group.id)}
    assert marks == {alice.account_id: (3, 0), bob.account_id: (3, 0), carol.account_id: (3, 0)}
    # The poster hears where every other member's watermark ended, in order.
    heard: dict[str, list[int]] = {}
    for receipt in a.receipts():
        heard.setdefault(receipt.account, []).append(receipt.delivered)
    assert {account: seqs[-1] for account, seqs in heard.items()} == {
        bob.account_id: 3,
        carol.account_id: 3,
    }
    assert all(seqs == sorted(seqs) for seqs in heard.values())
    # bob's other device hears of the rise its sibling made.
    own = [r.delivered for r in b1.receipts() if r.account == bob.account_id]
    assert own and own[-1] == 3
    assert await world.pending(bob) == [(group.id, 3)]
    assert await world.pending(bob2) == []
    assert await world.pending(carol) == []
