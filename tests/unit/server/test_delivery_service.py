"""The delivery service against the real store (the invariants of docs/architecture.md)."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from tidings.protocol import (
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    Accepted,
    ErrorCode,
    Rejected,
    Send,
    Watermark,
    decode_system_event,
    encode,
)
from tidings.server.bus.local import LocalBus
from tidings.server.delivery import DeliveryService
from tidings.server.store import Refused


def untimed(marks):
    """Watermarks without the times they moved at (tests/unit/server/test_social.py)."""
    return [msgspec.structs.replace(m, delivered_at=None, read_at=None) for m in marks]


async def direct(world, a, b) -> str:
    record, created = await world.engine.create_direct(a, b.username)
    assert created
    return record.id


# --------------------------------------------------------------------------- idempotency


async def test_resend_returns_original_seq_and_stores_nothing(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    b = await world.online(bob)
    msg_id = uuid.uuid4()
    first = await world.send(alice, conv, b"one", msg_id)
    assert isinstance(first, Accepted) and first.seq == 2
    assert len(b.envelopes()) == 1
    world.clock += 5000
    again = await world.send(alice, conv, b"one", msg_id)
    assert again == first  # same seq, same server timestamp
    assert b.envelopes() == []  # no second fan-out
    assert await world.count("envelopes") == 2
    assert await world.pending(bob) == [(conv, 1), (conv, 2)]


async def test_resend_after_restart(world, store_backend):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    msg_id = uuid.uuid4()
    first = await world.send(alice, conv, b"one", msg_id)
    await world.store.close()

    store = store_backend.store()
    await store.open()
    try:
        engine = DeliveryService(store, LocalBus())
        again = await engine.send(alice, Send(id=msg_id, conv=conv, payload=b"one"))
        assert again == first
    finally:
        await store.close()
    await world.store.open()  # the fixture closes it


async def test_another_senders_message_id_is_refused_and_stores_nothing(world):
    """Clients key messages by id: a member reusing someone else's id (even in another
    conversation) could make a recipient drop the real message as a duplicate."""
    alice, bob, mallory = [await world.account(n) for n in ("alice", "bob", "mallory")]
    conv = await direct(world, alice, bob)
    other = await direct(world, mallory, bob)
    msg_id = uuid.uuid4()
    first = await world.send(alice, conv, b"a", msg_id)
    before = await world.count("envelopes")
    for target in (conv, other):
        refused = await world.send(mallory if target == other else bob, target, b"b", msg_id)
        assert isinstance(refused, Rejected) and refused.code == ErrorCode.CONFLICT
    assert await world.count("envelopes") == before
    assert await world.send(alice, conv, b"a", msg_id) == first  # the owner's resend still works


# --------------------------------------------------------------------------- sequencing


async def test_seq_is_gapless_under_concurrency_and_refusals(world):
    alice, bob, eve = [await world.account(n) for n in ("alice", "bob", "eve")]
    conv = await direct(world, alice, bob)
    sends = []
    for i in range(300):
        sender = (alice, bob, eve)[i % 3]
        sends.append(world.send(sender, conv, bytes([i % 256])))
    results = await asyncio.gather(*sends)
    accepted = [r for r in results if isinstance(r, Accepted)]
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert len(rejected) == 100 and {r.code for r in rejected} == {ErrorCode.NOT_MEMBER}
    assert sorted(r.seq for r in accepted) == list(range(2, 202))
    stored = await world.store.envelopes(conv, 0, 500)
    assert [e.seq for e in stored] == list(range(1, 202))


async def test_conversations_have_independent_seqs(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    ab, ac = await direct(world, alice, bob), await direct(world, alice, carol)
    assert (await world.send(alice, ab)).seq == 2
    assert (await world.send(alice, ab)).seq == 3
    assert (await world.send(alice, ac)).seq == 2


# --------------------------------------------------------------------------- refusals


async def test_refused_sends_store_nothing(world):
    alice, bob, eve = [await world.account(n) for n in ("alice", "bob", "eve")]
    conv = await direct(world, alice, bob)
    before = (await world.count("envelopes"), await world.count("pending"))
    not_member = await world.send(eve, conv)
    not_found = await world.send(alice, "nope")
    too_large = await world.send(alice, conv, b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert isinstance(not_member, Rejected) and not_member.code == ErrorCode.NOT_MEMBER
    assert isinstance(not_found, Rejected) and not_found.code == ErrorCode.NOT_FOUND
    assert isinstance(too_large, Rejected) and too_large.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert (await world.count("envelopes"), await world.count("pending")) == before
    record = await world.store.conversation(conv)
    assert record is not None and record.last_seq == 1
    with pytest.raises(Refused) as refused:
        await world.engine.fetch(eve, conv, 0, 10)
    assert refused.value.code == ErrorCode.NOT_MEMBER
    with pytest.raises(Refused):
        await world.engine.read(eve, conv, 1)


# --------------------------------------------------------------------------- pending queue


async def test_pending_rows_for_every_device_but_the_sending_one(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    alice2 = await world.second_device(alice)
    conv = await direct(world, alice, bob)
    a1, a2, b = [await world.online(d) for d in (alice, alice2, bob)]
    sent = await world.send(alice, conv, b"hello")
    assert await world.pending(bob) == [(conv, 1), (conv, 2)]
    assert await world.pending(alice2) == [(conv, 1), (conv, 2)]
    assert await world.pending(alice) == [(conv, 1)]  # the created envelope only
    assert [e.seq for e in b.envelopes()] == [sent.seq]
    assert [e.seq for e in a2.envelopes()] == [sent.seq]
    assert a1.envelopes() == []


async def test_ack_drops_pending_up_to_seq_and_replay_pages(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    ab, cb = await direct(world, alice, bob), await direct(world, carol, bob)
    for _ in range(3):
        await world.send(alice, ab)
        await world.send(carol, cb)
    heads = await world.store.heads(bob.account_id)
    batches = [b async for b in world.engine.replay(bob, heads, page=4)]
    seen = [(b.conv, e.seq) for b in batches for e in b.envelopes]
    assert sorted(seen) == sorted([(ab, s) for s in range(1, 5)] + [(cb, s) for s in range(1, 5)])
    for batch in batches:
        seqs = [e.seq for e in batch.envelopes]
        assert seqs == sorted(seqs) and batch.head == heads[batch.conv]

    await world.engine.ack(bob, {ab: 3})
    assert sorted(await world.pending(bob)) == sorted([(ab, 4)] + [(cb, s) for s in range(1, 5)])
    await world.engine.ack(bob, {ab: 10, cb: 4})
    assert await world.pending(bob) == []


async def test_ttl_purges_old_pending_entries(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    world.clock += 31 * 86_400_000
    await world.send(alice, conv)
    assert await world.engine.purge_expired(30) == 2  # bob's and alice's `created`
    assert await world.pending(bob) == [(conv, 2)]
    assert len(await world.store.envelopes(conv, 0, 10)) == 2  # history stays


# --------------------------------------------------------------------------- receipts


async def test_ack_and_read_raise_watermarks_and_relay_receipts(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    bob2 = await world.second_device(bob)
    conv = await direct(world, alice, bob)
    a, b2 = await world.online(alice), await world.online(bob2)
    for _ in range(3):
        await world.send(alice, conv)
    b2.take()

    await world.engine.ack(bob, {conv: 3})
    receipts = a.receipts()
    assert [(r.account, r.delivered, r.read) for r in receipts] == [(bob.account_id, 3, 0)]
    assert [(r.delivered, r.read) for r in b2.receipts()] == [(3, 0)]  # own other device

    await world.engine.ack(bob2, {conv: 2})  # lower: the account's mark stays at 3
    assert a.receipts() == []

    await world.engine.read(bob, conv, 100)  # capped at the head
    assert [(r.delivered, r.read) for r in a.receipts()] == [(4, 4)]
    assert untimed(await world.store.watermarks(conv)) == [
        Watermark(conv, alice.account_id, 0, 0),
        Watermark(conv, bob.account_id, 4, 4),
    ]
    await world.engine.read(bob, conv, 2)  # never goes down
    assert a.receipts() == []


async def test_receipts_go_only_to_senders_in_the_covered_range(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    a, b = await world.online(alice), await world.online(bob)
    await world.send(alice, group.id)  # 2
    await world.send(bob, group.id)  # 3
    a.take()
    b.take()
    await world.engine.ack(carol, {group.id: 2})
    assert len(a.receipts()) == 1 and b.receipts() == []
    await world.engine.ack(carol, {group.id: 3})
    assert a.receipts() == [] and len(b.receipts()) == 1


async def test_welcome_has_heads_and_the_senders_open_watermarks(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    ab, ac = await direct(world, alice, bob), await direct(world, alice, carol)
    await world.engine.welcome(alice)  # alice's device was here before anything moved
    await world.send(alice, ab)
    await world.send(alice, ac)
    world.clock += 1000
    await world.engine.ack(bob, {ab: 2})
    welcome, overflow = await world.engine.welcome(alice)
    assert welcome.heads == {ab: 2, ac: 2} and overflow == []
    # Not everyone has read alice's messages in either conversation.
    assert set(untimed(welcome.watermarks)) == {
        Watermark(ab, bob.account_id, 2, 0),
        Watermark(ac, carol.account_id, 0, 0),
    }
    assert (await world.engine.welcome(bob))[0].watermarks == []


async def test_welcome_heads_only_where_the_device_is_behind(world, monkeypatch):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    ab, ac = await direct(world, alice, bob), await direct(world, alice, carol)
    await world.send(alice, ab)
    welcome, _ = await world.engine.welcome(alice, {ab: 2, ac: 0})
    assert welcome.heads == {ac: 1}  # up to date in ab: nothing to say about it
    # Thousands of conversations (others can add anyone to groups) must not overflow the frame.
    monkeypatch.setattr("tidings.server.delivery.MAX_WELCOME_HEADS", 1)
    welcome, _ = await world.engine.welcome(alice, {})
    assert welcome.heads == {ab: 2}  # the one furthest behind


async def test_welcome_reports_marks_that_moved_while_the_sender_was_away(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    await world.engine.welcome(alice)
    await world.send(alice, conv)
    world.clock += 1000
    await world.engine.read(bob, conv, 2)  # all read while alice is offline
    world.clock += 1000
    welcome, _ = await world.engine.welcome(alice)
    assert untimed(welcome.watermarks) == [Watermark(conv, bob.account_id, 2, 2)]
    world.clock += 1000
    # Nothing moved since that Welcome and everything is read: nothing to tell.
    assert (await world.engine.welcome(alice))[0].watermarks == []


async def test_welcome_overflow_goes_out_as_receipts(world, monkeypatch):
    from tidings.server import delivery

    monkeypatch.setattr(delivery, "MAX_WELCOME_WATERMARKS", 1)
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    await world.send(alice, group.id)
    welcome, overflow = await world.engine.welcome(alice)
    assert len(welcome.watermarks) == 1 and len(overflow) == 1
    reported = {welcome.watermarks[0].account, overflow[0].account}
    assert reported == {bob.account_id, carol.account_id}


# --------------------------------------------------------------------------- groups


async def test_group_membership_rules(world):
    alice, bob, carol, _dave = [await world.account(n) for n in ("alice", "bob", "carol", "dave")]
    group = await world.engine.create_group(alice, "team", ["bob"])
    roles = {m.username: m.role for m in group.members}
    assert roles == {"alice": "admin", "bob": "member"}

    for attempt, code in (
        (world.engine.add_members(bob, group.id, ["carol"]), ErrorCode.FORBIDDEN),
        (world.engine.add_members(carol, group.id, ["dave"]), ErrorCode.NOT_MEMBER),
        (world.engine.add_members(alice, group.id, ["bob"]), ErrorCode.ALREADY_MEMBER),
        (world.engine.add_members(alice, group.id, ["nobody"]), ErrorCode.NOT_FOUND),
        (world.engine.remove_member(bob, group.id, "alice"), ErrorCode.FORBIDDEN),
        (world.engine.add_members(alice, "nope", ["carol"]), ErrorCode.NOT_FOUND),
    ):
        with pytest.raises(Refused) as refused:
            await attempt
        assert refused.value.code == code

    ab = await direct(world, alice, bob)
    with pytest.raises(Refused) as refused:
        await world.engine.add_members(alice, ab, ["carol"])
    assert refused.value.code == ErrorCode.NOT_A_GROUP

    after = await world.engine.add_members(alice, group.id, ["carol", "dave"])
    assert [m.username for m in after.members] == ["alice", "bob", "carol", "dave"]
    assert after.last_seq == 2

    # The last admin leaves: the oldest remaining member takes over.
    await world.engine.leave(alice, group.id)
    record = await world.store.conversation(group.id)
    assert {m.username: m.role for m in record.members} == {
        "bob": "admin",
        "carol": "member",
        "dave": "member",
    }
    # A member who joined later sees the conversation from its joining on.
    page = await world.engine.fetch(carol, group.id, 0, 100)
    assert [e.seq for e in page.envelopes] == [2, 3]
    events = [decode_system_event(e.payload).action for e in page.envelopes]
    assert events == ["member_added", "member_left"]


async def test_member_cap(world):
    names = [f"user{i}" for i in range(7)]
    users = [await world.account(n) for n in names]
    with pytest.raises(Refused) as refused:
        await world.engine.create_group(users[0], "big", names[1:6])  # 6 > cap 5
    assert refused.value.code == ErrorCode.GROUP_FULL
    assert await world.count("conversations") == 0
    group = await world.engine.create_group(users[0], "ok", names[1:4])  # 4
    with pytest.raises(Refused) as refused:
        await world.engine.add_members(users[0], group.id, names[4:6])  # 6
    assert refused.value.code == ErrorCode.GROUP_FULL
    record = await world.store.conversation(group.id)
    assert len(record.members) == 4 and record.last_seq == 1
    full = await world.engine.add_members(users[0], group.id, names[4:5])
    assert len(full.members) == 5


async def test_removed_member_gets_its_removal_then_nothing(world):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    b, c = await world.online(bob), await world.online(carol)
    await world.engine.remove_member(alice, group.id, "bob")
    removal = b.envelopes()
    assert len(removal) == 1 and removal[0].kind == "system"
    event = decode_system_event(removal[0].payload)
    assert (event.action, event.members, event.actor) == (
        "member_removed",
        [bob.account_id],
        alice.account_id,
    )
    assert [e.seq for e in c.envelopes()] == [2]

    await world.send(alice, group.id)
    assert b.envelopes() == [] and [e.seq for e in c.envelopes()] == [3]
    assert await world.pending(bob) == [(group.id, 1), (group.id, 2)]
    assert group.id not in (await world.engine.welcome(bob))[0].heads
    rejected = await world.send(bob, group.id)
    assert isinstance(rejected, Rejected) and rejected.code == ErrorCode.NOT_MEMBER


async def test_direct_conversation_exists_once_per_pair(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    first, created = await world.engine.create_direct(alice, "bob")
    again, created_again = await world.engine.create_direct(bob, "alice")
    assert created and not created_again and again.id == first.id
    # with oneself it is the note to self: one member (tests/unit/server/test_everyday_server.py)
    note, _ = await world.engine.create_direct(alice, "alice")
    assert note.id != first.id and [m.account_id for m in note.members] == [alice.account_id]


async def test_usernames_are_unique(world):
    await world.account("alice")
    with pytest.raises(Refused) as refused:
        await world.account("alice")
    assert refused.value.code == ErrorCode.USERNAME_TAKEN


# --------------------------------------------------------------------------- frame sizes


async def test_batches_fit_in_a_frame(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    big = b"x" * (MAX_PAYLOAD_BYTES - 1000)
    for _ in range(5):
        assert isinstance(await world.send(alice, conv, big), Accepted)
    heads = await world.store.heads(bob.account_id)
    batches = [b async for b in world.engine.replay(bob, heads)]
    assert [e.seq for b in batches for e in b.envelopes] == [1, 2, 3, 4, 5, 6]
    assert all(len(encode(b)) <= MAX_FRAME_BYTES for b in batches)
    assert len(batches) >= 5
    page = await world.engine.fetch(bob, conv, 0, 100)
    assert len(encode(page)) <= MAX_FRAME_BYTES and [e.seq for e in page.envelopes] == [1, 2]


async def test_payload_and_mentions_together_are_capped(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    frame = Send(
        id=uuid.uuid4(),
        conv=conv,
        payload=b"x" * (MAX_PAYLOAD_BYTES - 100),
        mentions=[bob.account_id] * 10,
    )
    result = await world.engine.send(alice, frame)
    assert isinstance(result, Rejected) and result.code == ErrorCode.PAYLOAD_TOO_LARGE
