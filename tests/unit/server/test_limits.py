"""One user must not be able to exhaust the server: the outbox bound in bytes, progress-only
idle deadlines, send rate limits, the storage quota and the collection of stored envelopes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tidings.protocol import (
    Accepted,
    Ack,
    DeviceSend,
    Error,
    ErrorCode,
    Ping,
    Rejected,
    Send,
    encode,
)
from tidings.protocol.close import CloseCode
from tidings.server.config import ConfigError, ServerConfig
from tidings.server.sendlimits import GATE_TTL, MAX_GATES, SendLimiter, SendOrder, SendRates
from tidings.server.ws import DeviceConnection

from .test_ws_connection import FakeSocket


@pytest.fixture
async def pair(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    record, _ = await world.engine.create_direct(alice, "bob")
    return alice, bob, record.id


async def connect(world, device, *, idle: float = 30.0, queue_bytes: int = 4 << 20):
    socket = FakeSocket()
    connection = DeviceConnection(
        socket,
        device,
        world.engine,
        world.bus,
        idle_timeout=idle,
        queue_frames=2048,
        queue_bytes=queue_bytes,
    )
    task = asyncio.create_task(connection.run())
    await asyncio.sleep(0)
    return socket, task


# ----------------------------------------------------------------------------- slow readers


async def test_a_peer_that_does_not_read_is_closed_at_the_byte_bound(world, pair):
    alice, bob, conv = pair
    socket, task = await connect(world, bob, queue_bytes=1 << 20)
    await socket.hello()
    socket.open.clear()  # bob stops reading: far fewer frames than the frame cap pile up
    for _ in range(12):
        await world.send(alice, conv, b"y" * (100 * 1024))
    socket.open.set()
    await asyncio.wait_for(task, 5)
    assert socket.closed == (CloseCode.TRY_AGAIN_LATER, "too slow")
    assert not world.bus.online(bob.account_id)
    assert len(await world.pending(bob)) == 13  # nothing lost: "created" and the 12


async def test_empty_acks_and_pings_do_not_keep_a_stuck_connection(world, pair):
    alice, bob, conv = pair
    socket, task = await connect(world, bob, idle=0.3)
    await socket.hello()
    socket.open.clear()  # bob never reads again
    await world.send(alice, conv)
    await world.send(alice, conv)  # one frame stuck in the pump, one in the outbox
    async with asyncio.timeout(5):
        while not task.done():
            socket.incoming.put_nowait(encode(Ping(n=1)))
            socket.incoming.put_nowait(encode(Ack()))
            socket.incoming.put_nowait(encode(Ack(upto={conv: 1})))  # the same cursor again
            await asyncio.sleep(0.05)
    assert socket.closed is None or socket.closed[0] == CloseCode.IDLE
    assert not world.bus.online(bob.account_id)


async def test_pings_keep_a_connection_that_reads(world, pair):
    alice, bob, conv = pair
    socket, task = await connect(world, bob, idle=0.3)
    await socket.hello()
    for n in range(12):
        await world.send(alice, conv)
        socket.incoming.put_nowait(encode(Ping(n=n)))
        await asyncio.sleep(0.05)
    assert not task.done() and socket.closed is None
    socket.incoming.put_nowait(None)
    await task


async def test_acks_that_move_are_progress(world, pair):
    alice, bob, conv = pair
    socket, task = await connect(world, bob, idle=0.3)
    await socket.hello()
    socket.open.clear()
    for seq in range(2, 14):
        await world.send(alice, conv)
        socket.incoming.put_nowait(encode(Ack(upto={conv: seq})))
        await asyncio.sleep(0.05)
    assert not task.done()
    socket.open.set()
    socket.incoming.put_nowait(None)
    await task


# ----------------------------------------------------------------------------- rate limits


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def send_frame(conv: str, payload: bytes = b"x", msg_id: uuid.UUID | None = None) -> Send:
    return Send(id=msg_id or uuid.uuid4(), conv=conv, payload=payload)


async def test_a_flood_is_throttled_and_a_throttled_message_goes_through_later_once(world, pair):
    alice, _, conv = pair
    clock = Clock()
    world.engine.limiter = SendLimiter(SendRates(device_rate=20, device_burst=200), clock)
    answers = [await world.engine.send(alice, send_frame(conv)) for _ in range(300)]
    accepted = [a for a in answers if isinstance(a, Accepted)]
    limited = [a for a in answers if isinstance(a, Rejected)]
    assert len(accepted) == 200
    assert {a.code for a in limited} == {ErrorCode.RATE_LIMITED}
    # The client sends a throttled message again later, with the same id: stored once.
    retry = limited[0].id
    assert isinstance(await world.engine.send(alice, send_frame(conv, msg_id=retry)), Rejected)
    clock.now += 1.0
    first = await world.engine.send(alice, send_frame(conv, msg_id=retry))
    again = await world.engine.send(alice, send_frame(conv, msg_id=retry))
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert first.seq == again.seq == 202
    assert await world.count("envelopes", conv_id=conv) == 202


def test_a_limited_device_stays_limited_for_the_hold_so_followers_cannot_overtake() -> None:
    # Message k is refused; its pipelined followers arrive within a round trip, after tokens
    # have trickled back: without the hold k+1 would be stored before k's resend.
    clock = Clock()
    limiter = SendLimiter(SendRates(device_rate=20, device_burst=5, hold=1.0), clock)
    assert all(limiter.admit("a", 1, 10) for _ in range(5))
    assert not limiter.admit("a", 1, 10)  # k
    for step in range(1, 10):  # followers over 0.9 s: up to 18 tokens back, all refused
        clock.now = step / 10
        assert not limiter.admit("a", 1, 10)
    assert limiter.admit("b", 1, 10) and limiter.admit("a", 2, 10)  # only that device is held
    clock.now = 1.0  # the hold is over and the bucket is full again: a whole run goes through
    assert all(limiter.admit("a", 1, 10) for _ in range(5))
    assert not limiter.admit("a", 1, 10)


async def test_a_follower_after_the_hold_waits_for_the_refused_message(world, pair):
    # k is refused; k+1 comes after the hold, the bucket full again (a server that read the
    # burst slowly, a client that sent k+1 again first): it must not be stored before k.
    alice, _, conv = pair
    clock = Clock()
    world.engine.limiter = SendLimiter(SendRates(device_rate=20, device_burst=3), clock)
    order = SendOrder(clock)
    frames = [send_frame(conv) for _ in range(6)]
    answers = [await world.engine.send(alice, frame, order) for frame in frames]
    assert [type(a) for a in answers] == [Accepted] * 3 + [Rejected] * 3
    clock.now += 5.0
    for frame in frames[4:]:
        refused = await world.engine.send(alice, frame, order)
        assert isinstance(refused, Rejected) and refused.code == ErrorCode.RATE_LIMITED
    late = [await world.engine.send(alice, frame, order) for frame in frames[3:]]
    assert [a.seq for a in answers[:3] + late if isinstance(a, Accepted)] == [2, 3, 4, 5, 6, 7]


def test_an_order_gate_lasts_while_its_message_comes_back_and_is_then_forgotten() -> None:
    clock = Clock()
    order = SendOrder(clock)
    k, follower = uuid.uuid4(), uuid.uuid4()
    order.refused("c", k)
    order.refused("c", follower)  # a follower refused by the hold does not take k's place
    assert order.waits("c", follower) and not order.waits("c", k) and not order.waits("d", k)
    clock.now = GATE_TTL * 0.9
    order.refused("c", k)  # k sent again, refused again: the gate lasts on
    clock.now = GATE_TTL * 1.8
    assert order.waits("c", follower)
    clock.now = GATE_TTL * 2  # k not seen for longer than a client waits between tries
    assert not order.waits("c", follower)
    order.refused("c", k)
    order.passed("c", follower)  # only k opens the gate
    assert order.waits("c", follower)
    order.passed("c", k)
    assert not order.waits("c", follower)


def test_one_connection_gates_a_bounded_number_of_conversations() -> None:
    order = SendOrder(Clock())
    for n in range(MAX_GATES + 10):
        order.refused(f"c{n}", uuid.uuid4())
    assert order.waits(f"c{MAX_GATES - 1}", uuid.uuid4())
    assert not order.waits(f"c{MAX_GATES}", uuid.uuid4())


def test_a_limited_account_holds_all_its_devices() -> None:
    clock = Clock()
    rates = SendRates(account_rate=10, account_burst=3, hold=0.5)
    limiter = SendLimiter(rates, clock)
    assert [limiter.admit("a", n % 2 + 1, 10) for n in range(4)] == [True] * 3 + [False]
    clock.now = 0.4  # 4 tokens back, but the account is held
    assert not limiter.admit("a", 1, 10) and not limiter.admit("a", 2, 10)
    clock.now = 0.5
    assert limiter.admit("a", 2, 10)


def test_the_limiter_forgets_ended_holds() -> None:
    clock = Clock()
    limiter = SendLimiter(SendRates(device_burst=1), clock)
    for n in range(5000):
        assert limiter.admit(f"a{n}", 1, 10)
        assert not limiter.admit(f"a{n}", 1, 10)
    clock.now += 3600
    assert limiter.admit("last", 1, 10)
    assert not limiter.admit("last", 1, 10)  # a new hold sweeps the ended ones out
    assert len(limiter._devices) < 100


async def test_a_human_paced_sender_is_never_throttled(world, pair):
    alice, _, conv = pair
    clock = Clock()
    world.engine.limiter = SendLimiter(SendRates(), clock)
    for _ in range(50):  # bursts of 30 messages every 2 seconds, for well over a minute
        for _ in range(30):
            assert isinstance(await world.engine.send(alice, send_frame(conv)), Accepted)
        clock.now += 2.0


async def test_the_account_bucket_covers_all_its_devices(world, pair):
    alice, _, conv = pair
    phone = await world.second_device(alice)
    clock = Clock()
    rates = SendRates(device_rate=1, device_burst=10, account_rate=1, account_burst=15)
    world.engine.limiter = SendLimiter(rates, clock)
    answers = [await world.engine.send(d, send_frame(conv)) for d in (alice, phone) * 10]
    assert sum(isinstance(a, Accepted) for a in answers) == 15


async def test_bytes_per_second_are_limited(world, pair):
    alice, _, conv = pair
    clock = Clock()
    rates = SendRates(bytes_rate=100_000, bytes_burst=1_000_000)
    world.engine.limiter = SendLimiter(rates, clock)
    big = b"z" * 200_000
    answers = [await world.engine.send(alice, send_frame(conv, big)) for _ in range(10)]
    assert sum(isinstance(a, Accepted) for a in answers) == 5
    clock.now += 2.0
    assert isinstance(await world.engine.send(alice, send_frame(conv, big)), Accepted)


async def test_device_sends_are_rate_limited(world, pair):
    alice, bob, _ = pair
    clock = Clock()
    world.engine.limiter = SendLimiter(SendRates(device_burst=3), clock)
    frames = [DeviceSend(id=uuid.uuid4(), messages={f"{bob.account_id}:1": b"k"}) for _ in range(5)]
    answers = [await world.engine.device_send(alice, f) for f in frames]
    refused = [a for a in answers if isinstance(a, Error)]
    assert [a.code for a in refused] == [ErrorCode.RATE_LIMITED] * 2
    assert refused[0].ref == str(frames[3].id)


def test_rate_limited_and_quota_exceeded_are_transient() -> None:
    from tidings.protocol.errors import PERMANENT_SEND_ERRORS, TRANSIENT_SEND_ERRORS

    for code in (ErrorCode.RATE_LIMITED, ErrorCode.QUOTA_EXCEEDED):
        assert code in TRANSIENT_SEND_ERRORS and code not in PERMANENT_SEND_ERRORS


def test_the_limiter_forgets_full_buckets() -> None:
    clock = Clock()
    limiter = SendLimiter(SendRates(), clock)
    for n in range(5000):
        assert limiter.admit(f"a{n}", 1, 10)
    clock.now += 3600
    limiter.admit("last", 1, 10)
    assert len(limiter._devices) < 100 and len(limiter._accounts) < 100


# ----------------------------------------------------------------------------- quota


async def test_the_quota_refuses_then_admits_once_recipients_caught_up(world, pair):
    alice, bob, conv = pair
    world.engine.quota_bytes = 1500
    assert isinstance(await world.send(alice, conv, b"a" * 700), Accepted)
    assert isinstance(await world.send(alice, conv, b"b" * 700), Accepted)
    stored = await world.store.stored_bytes(alice.account_id)
    assert stored >= 1400
    refused = await world.send(alice, conv, b"c" * 700)
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.QUOTA_EXCEEDED
    assert await world.count("envelopes", conv_id=conv) == 3  # nothing stored
    assert await world.store.stored_bytes(alice.account_id) == stored
    # Bob's device acks: the envelopes are dropped, the bytes come off alice's count.
    await world.engine.ack(bob, {conv: 3})
    await world.engine.ack(alice, {conv: 1})
    assert await world.engine.collect_envelopes() == 3
    assert await world.store.stored_bytes(alice.account_id) == 0
    accepted = await world.send(alice, conv, b"c" * 700)
    assert isinstance(accepted, Accepted) and accepted.seq == 4


async def test_a_non_member_over_quota_hears_it_is_not_a_member(world, pair):
    _, _, conv = pair
    carol = await world.account("carol")
    other, _ = await world.engine.create_direct(carol, "alice")
    world.engine.quota_bytes = 100
    assert isinstance(await world.send(carol, other.id, b"x" * 90), Accepted)
    refused = await world.send(carol, conv, b"x" * 90)
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.NOT_MEMBER


# ----------------------------------------------------------------------------- collection


async def test_envelopes_acked_by_every_device_lose_their_body(world, pair, store):
    alice, bob, conv = pair
    phone = await world.second_device(bob)
    ids = [uuid.uuid4() for _ in range(4)]
    for msg_id in ids:
        await world.send(alice, conv, b"secret", msg_id)
    await world.engine.ack(alice, {conv: 1})
    await world.engine.ack(bob, {conv: 5})  # the phone has not acked: still pending there
    # Only "created" (seq 1, from before the phone was linked): 2.. wait for the phone.
    assert await world.engine.collect_envelopes() == 1
    await world.engine.ack(phone, {conv: 3})
    assert await world.engine.collect_envelopes() == 2
    assert [e.seq for e in await store.envelopes(conv, 0, 100)] == [4, 5]
    assert await world.count("envelopes", conv_id=conv, dropped=1) == 3
    # A resend of a collected message still gets its original seq, and stores nothing.
    again = await world.send(alice, conv, b"secret", ids[0])
    assert isinstance(again, Accepted) and again.seq == 2
    await world.engine.ack(phone, {conv: 5})
    assert await world.engine.collect_envelopes() == 2
    assert await store.envelopes(conv, 0, 100) == []
    # The seq stays gapless for new messages.
    new = await world.send(alice, conv, b"new")
    assert isinstance(new, Accepted) and new.seq == 6
    assert await world.engine.collect_envelopes() == 0  # bob has not acked seq 6


async def test_the_senders_own_messages_need_only_the_others(world, pair, store):
    # Alice's device never acks its own messages (it was never sent them): they go once bob
    # has them, though alice's delivered watermark stays behind.
    alice, bob, conv = pair
    await world.engine.ack(alice, {conv: 1})
    for _ in range(3):
        await world.send(alice, conv)
    await world.engine.ack(bob, {conv: 4})
    assert await world.engine.collect_envelopes() == 4
    await world.send(bob, conv)  # seq 5: alice has not got it
    assert await world.engine.collect_envelopes() == 0


async def test_read_receipts_still_reach_the_sender_after_collection(world, pair):
    alice, bob, conv = pair
    await world.engine.ack(alice, {conv: 1})
    await world.send(alice, conv)
    await world.engine.ack(bob, {conv: 2})
    assert await world.engine.collect_envelopes() == 2
    recorder = await world.online(alice)
    await world.engine.read(bob, conv, 2)
    (receipt,) = recorder.receipts()
    assert (receipt.account, receipt.read) == (bob.account_id, 2)


async def test_retention_deletes_old_envelopes_acked_or_not(world, pair, store):
    alice, bob, conv = pair
    world.engine.retention_days = 30
    await world.send(alice, conv, b"old" * 100)
    before = await store.stored_bytes(alice.account_id)
    assert before > 0
    world.clock += 10 * 86_400_000
    await world.send(alice, conv, b"newer")
    world.clock += 25 * 86_400_000  # 35 days after "created" and the first, 25 after the next
    assert await world.engine.collect_envelopes() == 2
    assert [e.seq for e in await store.envelopes(conv, 0, 100)] == [3]
    assert await world.pending(bob) == [(conv, 3)]
    assert 0 < await store.stored_bytes(alice.account_id) < before
    # Within the conversation the seq goes on; the direct conversation is still found.
    accepted = await world.send(alice, conv)
    assert isinstance(accepted, Accepted) and accepted.seq == 4
    record, created = await world.engine.create_direct(bob, "alice")
    assert record.id == conv and not created


async def test_collection_runs_in_bounded_batches(world, pair, store):
    alice, bob, conv = pair
    await world.engine.ack(alice, {conv: 1})
    for _ in range(25):
        await world.send(alice, conv)
    await world.engine.ack(bob, {conv: 26})
    assert await store.collect_envelopes(0, 10) == 10
    assert await store.collect_envelopes(0, 10) == 10
    assert await store.collect_envelopes(0, 10) == 6
    assert await store.collect_envelopes(0, 10) == 0
    assert await world.engine.collect_envelopes(batch=7) == 0


async def test_a_device_that_lost_its_history_fetches_what_remains(world, pair):
    alice, bob, conv = pair
    await world.engine.ack(alice, {conv: 1})
    for n in range(6):
        await world.send(alice, conv, bytes([n]))
    await world.engine.ack(bob, {conv: 4})
    assert await world.engine.collect_envelopes() == 4
    batch = await world.engine.fetch(bob, conv, 0, 3)
    assert [e.seq for e in batch.envelopes] == [5, 6, 7] and batch.head == 7


# ----------------------------------------------------------------------------- settings


def test_the_limits_are_settings(tmp_path) -> None:
    defaults = ServerConfig()
    assert defaults.send_queue_bytes == 4 << 20
    assert (defaults.send_rate_device, defaults.send_burst_device) == (20.0, 200)
    assert (defaults.send_rate_account, defaults.send_burst_account) == (40.0, 400)
    assert defaults.account_quota_bytes == 1 << 30
    assert defaults.envelope_retention_days == 30
    env = {"TIDINGS_SEND_QUEUE_BYTES": "1048576", "TIDINGS_ACCOUNT_QUOTA_BYTES": "0"}
    toml = tmp_path / "t.toml"
    toml.write_text("[server]\nsend_rate_device = 5.5\nenvelope_retention_days = 7\n")
    config = ServerConfig.load(env=env, toml_path=toml)
    assert config.send_queue_bytes == 1 << 20 and config.account_quota_bytes == 0
    assert config.send_rate_device == 5.5 and config.envelope_retention_days == 7
    for bad in (
        {"TIDINGS_SEND_QUEUE_BYTES": "1000"},
        {"TIDINGS_SEND_RATE_DEVICE": "0"},
        {"TIDINGS_SEND_BURST_BYTES": "10"},
        {"TIDINGS_ACCOUNT_QUOTA_BYTES": "-1"},
        {"TIDINGS_ENVELOPE_RETENTION_DAYS": "0"},
    ):
        with pytest.raises(ConfigError):
            ServerConfig.load(env=bad, toml_path=toml)


async def test_an_older_database_gets_its_stored_bytes_counted(tmp_path) -> None:
    import contextlib
    import importlib.resources
    import sqlite3

    from tidings.server.store.sqlite import SqliteStore
    from tidings.server.store.sqlite.migrations import SCRIPTS

    path = tmp_path / "old.sqlite3"
    scripts = importlib.resources.files("tidings.server.store.sqlite.migrations")
    before = SCRIPTS.index("sqlite_v6.sql")
    with contextlib.closing(sqlite3.connect(path)) as db:
        for name in SCRIPTS[:before]:
            db.executescript(scripts.joinpath(name).read_text())
        db.execute(f"PRAGMA user_version = {before}")
        db.execute("INSERT INTO accounts (id, username, created_at) VALUES ('a1', 'alice', 0)")
        db.execute(
            "INSERT INTO envelopes (conv_id, seq, id, sender, sender_device, ts, kind, payload)"
            " VALUES ('c1', 1, x'01', 'a1', 1, 0, 'msg', x'00112233')"
        )
        db.execute(
            "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at, payload)"
            " VALUES ('b1', 1, 'c1', 1, 0, x'0011')"
        )
        db.commit()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.stored_bytes("a1") == 6
    finally:
        await store.close()
