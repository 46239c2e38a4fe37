"""One device connection over a fake socket, against the real delivery service and store."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tidings.protocol import (
    MAX_FRAME_BYTES,
    Accepted,
    Batch,
    Envelope,
    Error,
    Hello,
    Ping,
    Pong,
    Send,
    Synced,
    Welcome,
    decode_server_frame,
    encode,
)
from tidings.protocol.close import CloseCode
from tidings.server.bus import Delivery
from tidings.server.ws import DeviceConnection, Phase
from tidings.server.ws.handlers import HANDLERS, FrameHandler
from tidings.server.ws.phase import OPEN


class FakeSocket:
    """Frames in through ``incoming``; frames out decoded into ``sent``. Clearing ``open``
    makes the socket stop taking frames, like a peer that stopped reading."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.sent: list = []
        self.closed: tuple[int, str] | None = None
        self.open = asyncio.Event()
        self.open.set()
        self.arrived = asyncio.Event()

    async def receive_frame(self):
        return await self.incoming.get()

    async def send_frame(self, data: bytes) -> None:
        await self.open.wait()
        self.sent.append(decode_server_frame(data))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.incoming.put_nowait(None)

    async def hello(self):
        """Say Hello and wait until the replay is over."""
        self.incoming.put_nowait(encode(Hello()))
        await self.wait_for(Synced)

    async def wait_for(self, kind, count: int = 1):
        async with asyncio.timeout(5):
            while sum(isinstance(f, kind) for f in self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return [f for f in self.sent if isinstance(f, kind)]


async def start(world, device, *, idle: float = 30.0, queue: int = 64):
    socket = FakeSocket()
    connection = DeviceConnection(
        socket, device, world.engine, world.bus, idle_timeout=idle, queue_frames=queue
    )
    task = asyncio.create_task(connection.run())
    await asyncio.sleep(0)  # run() attaches to the bus before its first real wait
    assert world.bus.online(device.account_id)
    return socket, task


@pytest.fixture
async def pair(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    record, _ = await world.engine.create_direct(alice, "bob")
    return alice, bob, record.id


async def test_live_copy_of_a_replayed_envelope_is_not_sent_twice(world, pair):
    alice, bob, conv = pair
    socket, task = await start(world, bob)
    # Connected but not synced yet: this envelope is both pending and delivered live.
    await world.send(alice, conv, b"early")
    await socket.hello()
    await world.send(alice, conv, b"later")
    await socket.wait_for(Envelope)
    kinds = [type(f) for f in socket.sent]
    assert kinds == [Welcome, Batch, Synced, Envelope]
    assert [e.seq for e in socket.sent[1].envelopes] == [1, 2]
    assert socket.sent[3].seq == 3
    socket.incoming.put_nowait(None)
    await task


async def test_bad_and_oversized_frames_keep_the_connection(world, pair):
    _, bob, _ = pair
    socket, task = await start(world, bob)
    await socket.hello()
    for junk in (b"\xc1", "text", b"\x00" * (MAX_FRAME_BYTES + 1)):
        socket.incoming.put_nowait(junk)
    socket.incoming.put_nowait(encode(Ping(n=3)))
    (pong,) = await socket.wait_for(Pong)
    codes = [f.code for f in socket.sent if isinstance(f, Error)]
    assert codes == ["bad_frame", "bad_frame", "frame_too_large"] and pong.n == 3
    assert socket.closed is None
    socket.incoming.put_nowait(None)
    await task


async def test_slow_consumer_is_closed(world, pair):
    alice, bob, conv = pair
    socket, task = await start(world, bob, queue=16)
    await socket.hello()
    socket.open.clear()  # bob stops reading
    for _ in range(40):
        await world.send(alice, conv)
    socket.open.set()
    await asyncio.wait_for(task, 5)
    assert socket.closed is not None and socket.closed[0] == CloseCode.TRY_AGAIN_LATER
    assert not world.bus.online(bob.account_id)
    # Everything is still in the pending queue for the next connection.
    assert len(await world.pending(bob)) == 41


async def test_peer_that_never_reads_is_dropped(world, pair):
    alice, bob, conv = pair
    socket, task = await start(world, bob, queue=16)
    await socket.hello()
    socket.open.clear()  # bob never reads again: even the close frame cannot go out
    for _ in range(40):
        await world.send(alice, conv)
    await asyncio.wait_for(task, 5)
    assert not world.bus.online(bob.account_id)


async def test_idle_connection_is_closed(world, pair):
    _, bob, _ = pair
    socket, task = await start(world, bob, idle=0.2)
    await asyncio.wait_for(task, 5)
    assert socket.closed == (CloseCode.IDLE, "idle timeout")


async def test_newer_connection_replaces_older(world, pair):
    _, bob, _ = pair
    first, first_task = await start(world, bob)
    second = FakeSocket()
    connection = DeviceConnection(
        second, bob, world.engine, world.bus, idle_timeout=30, queue_frames=64
    )
    second_task = asyncio.create_task(connection.run())
    await asyncio.wait_for(first_task, 5)
    assert first.closed is not None and first.closed[0] == CloseCode.REPLACED
    assert world.bus.online(bob.account_id) == 1
    second.incoming.put_nowait(None)
    await second_task


async def test_sends_before_hello_are_refused(world, pair):
    alice, _, conv = pair
    socket, task = await start(world, alice)
    socket.incoming.put_nowait(encode(Ping()))
    await socket.wait_for(Pong)
    socket.incoming.put_nowait(encode(Send(id=uuid.uuid4(), conv=conv, payload=b"")))
    (error,) = await socket.wait_for(Error)
    assert error.code == "bad_frame" and error.ref == "send"
    await socket.hello()
    socket.incoming.put_nowait(encode(Send(id=uuid.uuid4(), conv=conv, payload=b"")))
    await socket.wait_for(Accepted)
    socket.incoming.put_nowait(None)
    await task


async def test_second_hello_is_refused_and_the_connection_stays(world, pair):
    _, bob, _ = pair
    socket, task = await start(world, bob)
    await socket.hello()
    socket.incoming.put_nowait(encode(Hello()))
    (error,) = await socket.wait_for(Error)
    assert (error.code, error.message, error.ref) == (
        "bad_frame",
        "hello already received",
        "hello",
    )
    assert socket.closed is None
    socket.incoming.put_nowait(None)
    await task


async def test_hello_of_another_version_is_answered_then_closed(world, pair):
    _, bob, _ = pair
    socket, task = await start(world, bob)
    socket.incoming.put_nowait(encode(Hello(version=99)))
    await asyncio.wait_for(task, 5)
    (error,) = [f for f in socket.sent if isinstance(f, Error)]
    assert error.code == "unsupported_version" and error.ref == "hello"
    assert socket.closed == (CloseCode.UNSUPPORTED_VERSION, "unsupported version")


async def test_an_unlisted_transition_asked_by_a_frame_is_a_protocol_error(
    world, pair, monkeypatch
):
    _, bob, _ = pair

    async def rehello(connection, frame) -> None:
        connection._advance(Phase.SYNCING)  # LIVE -> SYNCING is not in the table

    monkeypatch.setitem(HANDLERS, Ping, FrameHandler(rehello, OPEN))
    socket, task = await start(world, bob)
    await socket.hello()
    socket.incoming.put_nowait(encode(Ping()))
    (error,) = await socket.wait_for(Error)
    assert error.code == "bad_frame" and error.ref == "ping"
    assert "cannot go from live to syncing" in error.message
    assert socket.closed is None
    socket.incoming.put_nowait(None)
    await task


class BurstSocket(FakeSocket):
    """A socket that can write several frames at once (as the server's own WebSocket
    protocol can), while its ``open`` flag is set; records each such write."""

    def __init__(self) -> None:
        super().__init__()
        self.bursts: list[int] = []

    def write_now(self, frames: list[bytes]) -> bool:
        if not self.open.is_set():
            return False
        self.bursts.append(len(frames))
        self.sent.extend(decode_server_frame(f) for f in frames)
        self.arrived.set()
        return True


async def test_frames_queued_together_go_out_in_one_write_in_order(world, pair):
    _, bob, _ = pair
    socket = BurstSocket()
    connection = DeviceConnection(
        socket, bob, world.engine, world.bus, idle_timeout=30.0, queue_frames=64
    )
    task = asyncio.create_task(connection.run())
    await socket.hello()
    written = len(socket.bursts)
    # Twenty frames queued at once (a group commit's worth) go out in one write, in order.
    for n in range(20):
        connection.deliver(Delivery(encode(Pong(n=n))))
    pongs = await socket.wait_for(Pong, 20)
    assert [p.n for p in pongs] == list(range(20))
    assert socket.bursts[written:] == [20]
    # A socket that does not take frames now gets them one by one once it does.
    socket.open.clear()
    for n in range(20, 25):
        connection.deliver(Delivery(encode(Pong(n=n))))
    await asyncio.sleep(0.05)
    socket.open.set()
    pongs = await socket.wait_for(Pong, 25)
    assert [p.n for p in pongs] == list(range(25))
    assert socket.bursts[written:] == [20]
    socket.incoming.put_nowait(None)
    await task


async def test_an_idle_connection_runs_no_task_besides_its_reader(world, pair):
    alice, bob, conv = pair
    socket, task = await start(world, bob)
    await socket.hello()
    socket.incoming.put_nowait(encode(Ping(n=1)))
    await socket.wait_for(Pong)
    await asyncio.sleep(0.05)  # the replay's request task ends, and the pump once it drained

    def own_tasks() -> list[str]:
        names = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not task]
        return [n for n in names if n.startswith("DeviceConnection.")]

    assert own_tasks() == []
    # A frame queued for it starts the pump again; what follows goes out in order.
    for text in (b"one", b"two", b"three"):
        await world.send(alice, conv, text)
    envelopes = await socket.wait_for(Envelope, 3)
    seqs = [e.seq for e in envelopes]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    await asyncio.sleep(0.05)
    assert own_tasks() == []
    socket.incoming.put_nowait(None)
    await task
