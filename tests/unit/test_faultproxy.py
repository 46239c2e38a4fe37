"""The fault-injecting proxy (tests/faultproxy.py) against a local echo server: bytes arrive
intact and in order through split writes and delays, a cut closes both sides, a stall delays
(and can end in a cut), refusals, lifetimes, determinism per seed, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import AsyncIterator

import pytest

from faultproxy import CLEAN, FaultProfile, FaultProxy

pytestmark = pytest.mark.timeout(60)

#: bound on every wait in these tests (a failure, never a measured speed)
WAIT = 15.0


class EchoServer:
    """Echoes every byte back; with ``framed``, reads a 4-byte length and echoes the whole
    frame in one write. Remembers how each of its connections ended."""

    def __init__(self, framed: bool = False) -> None:
        self.framed = framed
        self.port = 0
        self.ended: list[str] = []
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()
        how = "eof"
        try:
            while True:
                if self.framed:
                    head = await reader.readexactly(4)
                    body = await reader.readexactly(struct.unpack("!I", head)[0])
                    writer.write(head + body)
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            how = "eof" if not exc.partial else "eof mid-frame"
        except OSError:
            how = "reset"
        finally:
            self.ended.append(how)
            self.closed.set()
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def framed_echo() -> AsyncIterator[EchoServer]:
    server = EchoServer(framed=True)
    await server.start()
    yield server
    await server.stop()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert proxy.port is not None
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything until the connection ends, whether by EOF or by a reset."""
    got = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), WAIT):
            got += chunk
    return bytes(got)


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


async def test_clean_profile_forwards_both_ways(echo: EchoServer) -> None:
    async with FaultProxy(echo.port, seed=1) as proxy:
        reader, writer = await connect(proxy)
        writer.write(b"hello, proxy")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(12), WAIT) == b"hello, proxy"
        writer.write_eof()
        assert await read_until_closed(reader) == b""
        writer.close()
        await asyncio.wait_for(echo.closed.wait(), WAIT)
        assert echo.ended == ["eof"]
        assert proxy.counters.connections == 1
        assert proxy.counters.bytes_up == proxy.counters.bytes_down == 12
        assert proxy.counters.cuts == proxy.counters.stalls == 0


async def test_split_writes_and_delays_keep_bytes_intact_and_in_order(echo: EchoServer) -> None:
    profile = FaultProfile(
        split=1.0,
        split_bytes=(1, 97),
        split_pause=(0.0, 0.0005),
        delay=0.5,
        delay_seconds=(0, 0.01),
    )
    data = random.Random(7).randbytes(50_000)
    async with FaultProxy(echo.port, seed=2, profile=profile) as proxy:
        reader, writer = await connect(proxy)

        async def send() -> None:
            for at in range(0, len(data), 5_000):
                writer.write(data[at : at + 5_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await read_until_closed(reader)
        await sender
        writer.close()
        assert len(got) == len(data)
        assert got == data
        assert proxy.counters.splits > 0
        assert proxy.counters.delays > 0
        assert proxy.counters.bytes_up == proxy.counters.bytes_down == len(data)
        # split into small pieces: many more writes than 64 KiB reads would make
        assert proxy.counters.cuts == 0


async def test_a_cut_closes_both_sides_mid_frame(framed_echo: EchoServer) -> None:
    async with FaultProxy(framed_echo.port, seed=3, profile=FaultProfile(cut=1.0)) as proxy:
        reader, writer = await connect(proxy)
        writer.write(frame(b"x" * 1000))
        await writer.drain()
        # the client side: the connection ends without the echo
        assert await read_until_closed(reader) == b""
        # the server side: it saw part of the frame, then the end
        await asyncio.wait_for(framed_echo.closed.wait(), WAIT)
        assert framed_echo.ended[0] in ("eof mid-frame", "reset", "eof")
        assert proxy.counters.cuts == 1
        assert proxy.counters.bytes_up < 1004
        assert proxy.counters.bytes_down == 0
        writer.close()
        for _ in range(100):
            if proxy.live == 0:
                break
            await asyncio.sleep(0.01)
        assert proxy.live == 0


async def test_a_stall_delays_then_resumes(framed_echo: EchoServer) -> None:
    profile = FaultProfile(stall=1.0, stall_seconds=(0.4, 0.4), stall_then_cut=0.0)
    async with FaultProxy(framed_echo.port, seed=4, profile=profile) as proxy:
        reader, writer = await connect(proxy)
        loop = asyncio.get_running_loop()
        began = loop.time()
        writer.write(frame(b"slow"))
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(8), WAIT)
        waited = loop.time() - began
        assert echoed == frame(b"slow")
        # one stall on the way up and one on the way down, 0.4 s each: at least that long
        assert waited >= 0.75
        assert proxy.counters.stalls == 2
        assert proxy.counters.cuts == proxy.counters.stall_cuts == 0
        writer.close()


async def test_a_stall_can_end_in_a_cut(framed_echo: EchoServer) -> None:
    profile = FaultProfile(stall=1.0, stall_seconds=(0.1, 0.2), stall_then_cut=1.0)
    async with FaultProxy(framed_echo.port, seed=5, profile=profile) as proxy:
        reader, writer = await connect(proxy)
        writer.write(frame(b"never"))
        await writer.drain()
        assert await read_until_closed(reader) == b""
        await asyncio.wait_for(framed_echo.connected.wait(), WAIT)
        await asyncio.wait_for(framed_echo.closed.wait(), WAIT)
        assert proxy.counters.stall_cuts == 1
        assert proxy.counters.bytes_up == 0
        writer.close()


async def test_heal_releases_a_stall_at_once(framed_echo: EchoServer) -> None:
    profile = FaultProfile(stall=1.0, stall_seconds=(60, 60), stall_then_cut=1.0)
    async with FaultProxy(framed_echo.port, seed=6, profile=profile) as proxy:
        reader, writer = await connect(proxy)
        writer.write(frame(b"stuck"))
        await writer.drain()
        for _ in range(500):
            if proxy.counters.stalls:
                break
            await asyncio.sleep(0.01)
        assert proxy.counters.stalls == 1
        proxy.heal()
        # released (not cut) long before the 60 s stall would have ended
        assert await asyncio.wait_for(reader.readexactly(9), WAIT) == frame(b"stuck")
        assert proxy.counters.stall_cuts == 0
        assert proxy.profile == CLEAN
        writer.close()


async def test_refused_connections_and_a_down_upstream_are_closed(echo: EchoServer) -> None:
    async with FaultProxy(echo.port, seed=7, profile=FaultProfile(refuse=1.0)) as proxy:
        reader, writer = await connect(proxy)
        assert await read_until_closed(reader) == b""
        writer.close()
        assert proxy.counters.refused == 1
        assert not echo.connected.is_set()

    # nothing listens on the target port any more
    await echo.stop()
    async with FaultProxy(echo.port, seed=7) as proxy:
        reader, writer = await connect(proxy)
        assert await read_until_closed(reader) == b""
        writer.close()
        assert proxy.counters.upstream_failed == 1
    await echo.start()  # for the fixture's teardown (a new port; nothing connects to it)


async def test_lifetime_cuts_idle_connections(echo: EchoServer) -> None:
    profile = FaultProfile(lifetime=(0.1, 0.3))
    async with FaultProxy(echo.port, seed=8, profile=profile) as proxy:
        reader, writer = await connect(proxy)
        assert await read_until_closed(reader) == b""
        await asyncio.wait_for(echo.closed.wait(), WAIT)
        assert proxy.counters.lifetime_cuts == 1
        writer.close()


async def test_cut_all_and_stop_leave_nothing_behind(echo: EchoServer) -> None:
    before = asyncio.all_tasks()
    proxy = FaultProxy(echo.port, seed=9, profile=FaultProfile(stall=1.0, stall_seconds=(30, 30)))
    await proxy.start()
    clients = [await connect(proxy) for _ in range(3)]
    for _reader, writer in clients:
        writer.write(b"ping")
        await writer.drain()
    for _ in range(500):
        if proxy.live == 3 and proxy.counters.stalls == 3:
            break
        await asyncio.sleep(0.01)
    assert proxy.live == 3
    assert proxy.cut_all() == 3
    for reader, writer in clients:
        assert await read_until_closed(reader) == b""
        writer.close()

    more = [await connect(proxy) for _ in range(2)]
    for _reader, writer in more:
        writer.write(b"ping")
        await writer.drain()
    await proxy.stop()
    for reader, writer in more:
        assert await read_until_closed(reader) == b""
        writer.close()
    assert proxy.live == 0
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before  # every task of the proxy is gone


async def run_exchange(port: int, seed: int, profile: FaultProfile) -> dict[str, int]:
    """30 request/answer round trips on fresh connections (one frame at a time, so the chunks
    the proxy sees do not depend on timing); a cut one is retried on a new connection."""
    async with FaultProxy(port, seed=seed, profile=profile) as proxy:
        for i in range(30):
            body = f"message {i}".encode() * (i % 7 + 1)
            for _attempt in range(50):
                reader, writer = await connect(proxy)
                try:
                    writer.write(frame(body))
                    await writer.drain()
                    got = await asyncio.wait_for(reader.readexactly(4 + len(body)), WAIT)
                    assert got == frame(body)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    continue
                finally:
                    writer.close()
            else:
                raise AssertionError("50 attempts, every one cut")
        return proxy.counters.as_dict()


async def test_the_same_seed_makes_the_same_faults(framed_echo: EchoServer) -> None:
    profile = FaultProfile(
        cut=0.15,
        split=0.5,
        split_bytes=(1, 9),
        split_pause=(0.0, 0.0002),
        delay=0.3,
        delay_seconds=(0.0, 0.002),
    )
    first = await run_exchange(framed_echo.port, 11, profile)
    again = await run_exchange(framed_echo.port, 11, profile)
    assert first == again
    assert first["cuts"] > 0 and first["splits"] > 0
    others = [await run_exchange(framed_echo.port, seed, profile) for seed in (12, 13)]
    assert any(other != first for other in others)


def test_profiles_are_checked() -> None:
    with pytest.raises(ValueError):
        FaultProfile(cut=1.5)
    with pytest.raises(ValueError):
        FaultProfile(stall_seconds=(2.0, 1.0))
    with pytest.raises(ValueError):
        FaultProfile(split_bytes=(0, 4))
