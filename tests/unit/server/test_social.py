"""The server side of typing, read-receipt privacy, blocking, profiles, the device list and
watermark times (tidings.server.social, the "social" tables), on every store back end."""

from __future__ import annotations

import uuid

import pytest

from tidings.protocol import DeviceSend, Envelope, Error, Receipt, TypingNotice
from tidings.protocol.frames import Typing
from tidings.server.domain import Refused
from tidings.server.social import SocialService


@pytest.fixture
def social(world) -> SocialService:
    clock = [0.0]
    service = SocialService(world.store, world.bus, typing_per_minute=3, clock=lambda: clock[0])
    service.clock = clock  # type: ignore[attr-defined]
    world.engine.social = service
    return service


async def direct(world, a, b) -> str:
    record, _ = await world.engine.create_direct(a, b.username)
    return record.id


def typing_of(frames) -> list[tuple[str, bool]]:
    return [(f.account, f.on) for f in frames if isinstance(f, TypingNotice)]


# --------------------------------------------------------------------------- typing


async def test_typing_reaches_online_members_and_own_devices_and_is_never_stored(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    alice2 = await world.second_device(alice)
    conv = await direct(world, alice, bob)
    b, a2 = await world.online(bob), await world.online(alice2)
    a = await world.online(alice)
    before = await world.count("pending")
    assert await social.typing(alice.account_id, 1, Typing(conv=conv, on=True)) is None
    assert typing_of(b.take()) == [(alice.account_id, True)]
    assert typing_of(a2.take()) == [(alice.account_id, True)]
    assert typing_of(a.take()) == []  # not back to the typing device
    assert await world.count("pending") == before  # nothing queued for offline devices
    assert await world.pending(bob) == [(conv, 1)]  # only the conversation's creation


async def test_typing_is_rate_limited_refused_to_strangers_and_follows_settings(world, social):
    alice, bob, eve = [await world.account(n) for n in ("alice", "bob", "eve")]
    conv = await direct(world, alice, bob)
    b = await world.online(bob)
    assert await social.typing(eve.account_id, 1, Typing(conv=conv)) == "not_member"
    assert await social.typing(eve.account_id, 1, Typing(conv="cnope")) == "not_found"
    b.take()
    for _ in range(5):  # 3 per minute, the eve tries above took none of alice's
        await social.typing(alice.account_id, 1, Typing(conv=conv))
    assert len(typing_of(b.take())) == 3
    social.clock[0] += 60  # type: ignore[attr-defined]
    await world.store.set_privacy(bob.account_id, None, False)  # bob turned them off
    await social.typing(alice.account_id, 1, Typing(conv=conv))
    assert typing_of(b.take()) == []
    await world.store.set_privacy(bob.account_id, None, True)
    await world.store.set_privacy(alice.account_id, None, False)  # alice turned them off
    await social.typing(alice.account_id, 1, Typing(conv=conv))
    assert typing_of(b.take()) == []


async def test_typing_over_the_websocket_needs_a_handler(world, social):
    from tidings.server.ws.handlers import HANDLERS

    assert Typing in HANDLERS


# --------------------------------------------------------------------------- read receipts


async def test_read_receipts_off_hides_reads_both_ways_but_syncs_own_devices(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    bob2 = await world.second_device(bob)
    conv = await direct(world, alice, bob)
    await world.send(alice, conv)
    await world.send(bob, conv)
    a, b2 = await world.online(alice), await world.online(bob2)
    b = await world.online(bob)
    await world.store.set_privacy(bob.account_id, False, None)
    await world.engine.read(bob, conv, 3)
    told = [r for r in a.take() if isinstance(r, Receipt)]
    assert [(r.delivered, r.read, r.read_at) for r in told] == [(3, 0, None)]
    assert [(r.read, r.read_at is not None) for r in b2.receipts()] == [(3, True)]  # own device
    # REST and Welcome: alice does not see bob's read mark
    marks = {m.account: m for m in await world.engine.receipts(alice, conv)}
    assert (marks[bob.account_id].delivered, marks[bob.account_id].read) == (3, 0)
    mine = {m.account: m for m in await world.engine.receipts(bob, conv)}
    assert mine[bob.account_id].read == 3
    # and bob does not see alice's
    await world.engine.read(alice, conv, 3)
    assert [(r.read) for r in b.receipts()] == [0]
    marks = {m.account: m for m in await world.engine.receipts(bob, conv)}
    assert marks[alice.account_id].read == 0
    welcome, _ = await world.engine.welcome(bob)
    assert all(w.read == 0 for w in welcome.watermarks if w.account != bob.account_id)
    # on again: both see reads
    await world.store.set_privacy(bob.account_id, True, None)
    marks = {m.account: m for m in await world.engine.receipts(alice, conv)}
    assert marks[bob.account_id].read == 3


async def test_receipts_carry_the_times_the_marks_moved(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    await world.send(alice, conv)
    a = await world.online(alice)
    world.clock = 5_000
    await world.engine.ack(bob, {conv: 2})
    world.clock = 9_000
    await world.engine.read(bob, conv, 2)
    told = a.receipts()
    assert [(r.delivered_at, r.read_at) for r in told] == [(5_000, None), (5_000, 9_000)]
    (mark,) = [m for m in await world.engine.receipts(alice, conv) if m.account == bob.account_id]
    assert (mark.delivered_at, mark.read_at) == (5_000, 9_000)


# --------------------------------------------------------------------------- blocking


async def test_a_blocked_accounts_direct_messages_are_accepted_but_never_delivered(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    a = await world.online(alice)
    await world.store.block(alice.account_id, bob.account_id, 1)
    answer = await world.send(bob, conv, msg_id=uuid.uuid4())
    assert answer.seq == 2  # accepted: bob is not told
    assert [e for e in a.take() if isinstance(e, Envelope)] == []
    assert await world.pending(alice) == [(conv, 1)]  # no pending row for the blocker
    batch = await world.engine.fetch(alice, conv, 0, 10)
    assert [e.seq for e in batch.envelopes] == [1]  # Fetch leaves it out
    # alice's own message moves her watermark past bob's: bob hears nothing of it
    b = await world.online(bob)
    await world.send(alice, conv)
    await world.engine.ack(alice, {conv: 3})
    await world.engine.read(alice, conv, 3)
    assert b.receipts() == []
    marks = {m.account for m in await world.engine.receipts(bob, conv)}
    assert alice.account_id not in marks
    # device messages to her devices are dropped, not reported unknown
    frame = DeviceSend(id=uuid.uuid4(), messages={f"{alice.account_id}:1": b"x"})
    accepted = await world.engine.device_send(bob, frame)
    assert not isinstance(accepted, Error) and accepted.unknown == []
    assert await world.store.device_queue(alice.account_id, 1, 0, 10) == []
    # unblocked: delivered again
    await world.store.unblock(alice.account_id, bob.account_id)
    await world.send(bob, conv)
    assert [e.seq for e in a.envelopes()] == [4]


async def test_block_list_rules(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    with pytest.raises(Refused):
        await world.store.block(alice.account_id, "anobody", 1)
    await world.store.block(alice.account_id, bob.account_id, 7)
    await world.store.block(alice.account_id, bob.account_id, 8)  # idempotent
    (only,) = await world.store.blocked_accounts(alice.account_id)
    assert (only.username, only.blocked_at) == ("bob", 7)
    assert await world.store.blocked_accounts(bob.account_id) == []


# --------------------------------------------------------------------------- profiles, devices


async def test_profiles_are_versioned_blobs_written_by_their_owner(world, social):
    alice = await world.account("alice")
    assert await world.store.profile(alice.account_id) is None
    stored = await world.store.put_profile(alice.account_id, 1, b"sealed", 10)
    assert (stored.version, stored.blob) == (1, b"sealed")
    with pytest.raises(Refused) as refused:
        await world.store.put_profile(alice.account_id, 1, b"older", 11)
    assert refused.value.code == "conflict"
    await world.store.put_profile(alice.account_id, 5, b"newer", 12)
    found = await world.store.profile(alice.account_id)
    assert found is not None and (found.version, found.blob) == (5, b"newer")


async def test_the_device_list_names_devices_and_when_they_last_connected(world, social):
    alice = await world.account("alice")
    await world.add_device(alice, "laptop")
    world.clock = 77_000
    await world.engine.welcome(alice)
    devices = await world.store.device_list(alice.account_id)
    assert [(d.device_id, d.name, d.last_seen) for d in devices] == [
        (1, "primary", 77_000),
        (2, "laptop", None),
    ]
