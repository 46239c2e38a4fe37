"""The WebSocket gateway of the real server process, frame by frame."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
import websockets
from store_inspection import inspector, store_env  # noqa: F401 - store_env: both legs

from tidings.protocol import (
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    Accepted,
    Ack,
    Batch,
    Envelope,
    Error,
    Fetch,
    Hello,
    Read,
    Receipt,
    Rejected,
    Send,
    Welcome,
    decode_system_event,
)

#: These tests speak the raw protocol with content in clear, which a server refuses by default
#: since issue 4 (``require_e2ee``): their servers accept it unless told otherwise.
SERVER_ENV = {"TIDINGS_REQUIRE_E2EE": "false"}


def count_rows(server, table: str) -> int:
    return inspector(server).count(table)


async def test_send_is_accepted_and_delivered_live(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    a, b = await kit.connect(alice), await kit.connect(bob)
    welcome, replay, _ = await a.hello()
    assert welcome.account_id == alice.account_id and welcome.device_id == 1
    assert welcome.heads == {conv: 1}
    assert [e.seq for e in replay] == [1]  # the `created` envelope
    await b.hello()

    msg_id = uuid.uuid4()
    await a.send(Send(id=msg_id, conv=conv, payload=b"hi bob"))
    accepted = await a.expect(Accepted)
    assert (accepted.id, accepted.conv, accepted.seq) == (msg_id, conv, 2)
    envelope = await b.expect(Envelope)
    assert (envelope.seq, envelope.id, envelope.payload) == (2, msg_id, b"hi bob")
    assert envelope.sender == alice.account_id and envelope.kind == "msg"


async def test_offline_recipient_gets_replay_and_acks(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    ids = [uuid.uuid4() for _ in range(5)]
    for i, msg_id in enumerate(ids):
        await a.send(Send(id=msg_id, conv=conv, payload=f"m{i}".encode()))
    seqs = [(await a.expect(Accepted)).seq for _ in ids]
    assert sorted(seqs) == [2, 3, 4, 5, 6]

    b = await kit.connect(bob)
    welcome, replay, _ = await b.hello()
    assert welcome.heads == {conv: 6}
    assert [e.seq for e in replay] == [1, 2, 3, 4, 5, 6]
    assert [e.payload for e in replay[1:]] == [f"m{i}".encode() for i in range(5)]

    # Ack part: the rest is replayed on the next connect, the acked part is not.
    await b.send(Ack(upto={conv: 4}))
    receipt = await a.expect(Receipt)
    assert (receipt.account, receipt.delivered, receipt.read) == (bob.account_id, 4, 0)
    await b.ping()
    await b.close()
    b = await kit.connect(bob)
    _, replay, _ = await b.hello()
    assert [e.seq for e in replay] == [5, 6]
    await b.send(Ack(upto={conv: 6}))
    await b.send(Read(conv=conv, seq=6))
    # The Ack and the Read may be stored in either order (a pooled store runs them side by
    # side): alice hears at most two receipts, never going back, ending delivered and read.
    receipts = [await a.expect(Receipt)]
    while receipts[-1].read < 6:
        receipts.append(await a.expect(Receipt))
    assert len(receipts) <= 2
    assert [(r.delivered, r.read) for r in receipts][-1] == (6, 6)
    assert all(r.delivered == 6 for r in receipts)
    await b.close()
    # The Read's receipt (delivered 6 too) may reach alice before the Ack's transaction, which
    # frees bob's queue, has committed: wait for the queue to be empty, then nothing replays.
    deadline = asyncio.get_running_loop().time() + 10
    while inspector(server).count("pending", account_id=bob.account_id) > 0:
        assert asyncio.get_running_loop().time() < deadline, "bob's queue still holds rows"
        await asyncio.sleep(0.05)
    b = await kit.connect(bob)
    _, replay, _ = await b.hello()
    assert replay == []

    r = await kit.http.get(f"/v1/conversations/{conv}/receipts", headers=alice.headers)
    marks = {w["account"]: (w["delivered"], w["read"]) for w in r.json()}
    assert marks[bob.account_id] == (6, 6)


async def test_hello_cursors_count_as_acks(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    for _ in range(3):
        await a.post(conv, b"x")
    b = await kit.connect(bob)
    _, replay, _ = await b.hello(cursors={conv: 2})
    assert [e.seq for e in replay] == [3, 4]


async def test_welcome_tells_a_returning_sender_its_statuses(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    await a.post(conv, b"x")
    await a.close()

    async def welcome_marks() -> dict[tuple[str, str], tuple[int, int]]:
        a = await kit.connect(alice)
        welcome, _, _ = await a.hello(cursors={conv: 2})
        await a.close()
        return {(w.conv, w.account): (w.delivered, w.read) for w in welcome.watermarks}

    async def next_welcome_says(expected: tuple[int, int]) -> None:
        # Acks and reads are not answered: the server takes them in the background, so
        # alice comes back until a Welcome tells her (it must within a few seconds).
        deadline = asyncio.get_running_loop().time() + 10
        while (marks := await welcome_marks()) != {(conv, bob.account_id): expected}:
            assert asyncio.get_running_loop().time() < deadline, marks
            await asyncio.sleep(0.1)

    b = await kit.connect(bob)
    await b.hello()
    await b.send(Ack(upto={conv: 2}))
    await next_welcome_says((2, 0))

    # Read by everyone while alice is away: her next Welcome still says so.
    await b.send(Read(conv=conv, seq=2))
    await next_welcome_says((2, 2))


async def test_duplicate_send_after_sigkill_returns_original_seq(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    msg_id = uuid.uuid4()
    await a.send(Send(id=msg_id, conv=conv, payload=b"once"))
    first = await a.expect(Accepted)

    server.kill()
    server.restart()
    a = await kit.connect(alice)
    await a.hello()
    await a.send(Send(id=msg_id, conv=conv, payload=b"once"))
    again = await a.expect(Accepted)
    assert (again.seq, again.ts) == (first.seq, first.ts)
    assert count_rows(server, "envelopes") == 2  # created + the message, stored once

    b = await kit.connect(bob)
    _, replay, _ = await b.hello()
    assert [e.seq for e in replay] == [1, 2]


async def test_malformed_frames_get_bad_frame_and_connection_survives(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    a = await kit.connect(alice)
    await a.send(Send(id=uuid.uuid4(), conv="c", payload=b""))
    error = await a.expect(Error)  # nothing before Hello
    assert error.code == "bad_frame"
    await a.hello()
    for junk in (
        b"\xc1garbage",
        msgspec.msgpack.encode({"t": "nope"}),
        msgspec.msgpack.encode({"t": "send", "id": "not-a-uuid", "conv": "c", "payload": b""}),
        msgspec.msgpack.encode({"t": "fetch", "conv": "c", "after": -1}),
        "a text frame",
    ):
        await a.send_raw(junk)
        error = await a.expect(Error)
        assert error.code == "bad_frame", junk
    await a.send(Hello())
    assert (await a.expect(Error)).code == "bad_frame"
    await a.ping()


async def test_oversized_frame_gets_frame_too_large_and_connection_survives(server, server_kit):
    kit = server_kit(server)
    alice, _, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    await a.send_raw(b"\x00" * (MAX_FRAME_BYTES + 1))
    assert (await a.expect(Error)).code == "frame_too_large"
    await a.send(Send(id=uuid.uuid4(), conv=conv, payload=b"x" * (MAX_FRAME_BYTES + 10)))
    assert (await a.expect(Error)).code == "frame_too_large"
    big = uuid.uuid4()
    await a.send(Send(id=big, conv=conv, payload=b"x" * (MAX_PAYLOAD_BYTES + 1)))
    rejected = await a.expect(Rejected)
    assert (rejected.id, rejected.code) == (big, "payload_too_large")
    await a.ping()
    assert (await a.post(conv, b"x" * MAX_PAYLOAD_BYTES)).seq == 2


async def test_non_member_is_refused_and_nothing_is_stored(server, server_kit):
    kit = server_kit(server)
    alice, bob, eve = [await kit.account(n) for n in ("alice", "bob", "eve")]
    conv = (await kit.direct(alice, bob))["id"]
    envelopes, pending = count_rows(server, "envelopes"), count_rows(server, "pending")
    e = await kit.connect(eve)
    await e.hello()
    msg_id = uuid.uuid4()
    await e.send(Send(id=msg_id, conv=conv, payload=b"let me in"))
    rejected = await e.expect(Rejected)
    assert (rejected.id, rejected.code) == (msg_id, "not_member")
    await e.send(Send(id=uuid.uuid4(), conv="no-such-conv", payload=b"?"))
    assert (await e.expect(Rejected)).code == "not_found"
    await e.send(Fetch(conv=conv, after=0))
    assert (await e.expect(Error)).code == "not_member"
    await e.send(Read(conv=conv, seq=1))
    assert (await e.expect(Error)).code == "not_member"
    r = await kit.http.get(f"/v1/conversations/{conv}/messages", headers=eve.headers)
    assert r.status_code == 403 and r.json()["code"] == "not_member"
    assert count_rows(server, "envelopes") == envelopes
    assert count_rows(server, "pending") == pending


async def test_fetch_fills_a_gap(server, server_kit):
    kit = server_kit(server)
    alice, _, conv = await kit.direct_pair()
    a = await kit.connect(alice)
    await a.hello()
    for i in range(4):
        await a.post(conv, bytes([i]))
    await a.send(Fetch(conv=conv, after=2, limit=2))
    batch = await a.expect(Batch)
    assert [e.seq for e in batch.envelopes] == [3, 4] and batch.head == 5


async def test_other_devices_and_removed_members(server, server_kit):
    """A removed member gets its own removal envelope, then nothing more."""
    kit = server_kit(server)
    alice, bob, carol = [await kit.account(n) for n in ("alice", "bob", "carol")]
    gid = (await kit.group(alice, "team", [bob, carol]))["id"]
    b = await kit.connect(bob)
    await b.hello()
    r = await kit.http.delete(f"/v1/groups/{gid}/members/bob", headers=alice.headers)
    assert r.status_code == 200
    removal = await b.expect(Envelope)
    event = decode_system_event(removal.payload)
    assert removal.kind == "system" and event.action == "member_removed"
    assert event.members == [bob.account_id]

    a = await kit.connect(alice)
    await a.hello()
    await a.post(gid, b"after bob")
    await b.ping()  # bob's connection got nothing in between
    c = await kit.connect(carol)
    _, replay, _ = await c.hello()
    assert [e.seq for e in replay] == [1, 2, 3]


async def test_second_connection_replaces_the_first(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    first = await kit.connect(alice)
    await first.hello()
    second = await kit.connect(alice)
    await second.hello()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await first.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    await second.ping()


async def test_idle_connection_is_closed(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_IDLE_TIMEOUT": "1.5"})
    kit = server_kit(server)
    alice, bob = await kit.account("alice"), await kit.account("bob")
    quiet, chatty = await kit.connect(alice), await kit.connect(bob)
    await quiet.hello()
    await chatty.hello()

    async def keep_pinging() -> None:
        # A connection that keeps talking stays open.
        for n in range(5):
            await asyncio.sleep(0.5)
            await chatty.ping(n)

    pinger = asyncio.create_task(keep_pinging())
    started = asyncio.get_running_loop().time()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await quiet.recv(wait=10)
    elapsed = asyncio.get_running_loop().time() - started
    assert 1.0 <= elapsed <= 5.0
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    await pinger


async def test_slow_consumer_is_disconnected_and_catches_up(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_SEND_QUEUE_FRAMES": "16"})
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    b = await kit.connect(bob)
    await b.hello()
    a = await kit.connect(alice)
    await a.hello()
    # Bob stops reading; alice sends enough big envelopes to fill every buffer on the way.
    payload = b"p" * 200_000
    total = 120
    for _ in range(total):
        await a.send(Send(id=uuid.uuid4(), conv=conv, payload=payload))
    for _ in range(total):
        await a.until(Accepted, wait=30)
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await b.recv(wait=10)
    b = await kit.connect(bob)
    _, replay, _ = await b.hello(cursors={conv: 1})
    assert [e.seq for e in replay] == list(range(2, 2 + total))


async def test_welcome_frame_shape(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    a = await kit.connect(alice)
    await a.send(Hello(version=2))
    error = await a.expect(Error)
    assert error.code == "unsupported_version"
    with pytest.raises(websockets.ConnectionClosed):
        await a.recv()
    a = await kit.connect(alice)
    welcome, replay, _ = await a.hello()
    assert isinstance(welcome, Welcome) and welcome.heads == {} and replay == []
