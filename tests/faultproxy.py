"""A fault-injecting TCP proxy for tests (asyncio, loopback only).

``FaultProxy(target_port, seed=...)`` listens on 127.0.0.1 on a free port and forwards every
connection to ``127.0.0.1:target_port``. Under the current :class:`FaultProfile` it can, for each
chunk it forwards:

* **cut** the connection: forward only part of the chunk (so the peer sees half a frame), then
  close both sides abruptly (``SO_LINGER`` 0, i.e. a reset, then ``abort()``);
* **stall** one or both directions for a while, then resume or cut;
* **split** the chunk into small random pieces written with tiny pauses between them;
* **delay** the chunk.

It can also refuse new connections (accept, then reset at once), cut every connection after a
random lifetime (so idle connections die too), :meth:`~FaultProxy.cut_all` on demand, and
:meth:`~FaultProxy.heal` (a clean profile, every stall released). :attr:`FaultProxy.counters`
says what it did.

Determinism: every decision comes from a ``random.Random`` seeded with ``(seed, connection
number, direction)``, so for a given seed the n-th chunk of the n-th connection always meets the
same fate. What the chunks are (how TCP cuts the stream) and the order in which concurrent
connections are accepted are up to the kernel, so a run is reproducible only as far as those are.

Bounded: every pause is at most the profile's maximum, every socket read is on a live
connection that :meth:`~FaultProxy.stop` resets, and ``stop()`` cancels and awaits every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
from collections.abc import Iterator

UP = "up"  # client → server
DOWN = "down"  # server → client
READ_SIZE = 65536


@dataclasses.dataclass(frozen=True)
class FaultProfile:
    """What can go wrong, as probabilities per forwarded chunk (or per new connection) and
    ranges ``(low, high)`` in seconds or bytes. The default profile forwards faithfully."""

    #: a new connection is reset at once instead of being forwarded
    refuse: float = 0.0
    #: the connection is cut in the middle of a chunk
    cut: float = 0.0
    #: the direction (or, with ``stall_both``, the whole connection) stops for a while
    stall: float = 0.0
    stall_seconds: tuple[float, float] = (0.2, 1.0)
    #: of the stalls, this part stops both directions (the rest only the chunk's own)
    stall_both: float = 0.5
    #: of the stalls, this part ends in a cut instead of resuming
    stall_then_cut: float = 0.3
    #: the chunk is written in pieces of ``split_bytes`` with ``split_pause`` between them
    split: float = 0.0
    split_bytes: tuple[int, int] = (1, 64)
    split_pause: tuple[float, float] = (0.0, 0.005)
    #: the chunk waits ``delay_seconds`` before it is forwarded
    delay: float = 0.0
    delay_seconds: tuple[float, float] = (0.0, 0.05)
    #: every connection is cut after a random lifetime in this range (None: no limit)
    lifetime: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("refuse", "cut", "stall", "stall_both", "stall_then_cut", "split", "delay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value!r}")
        for name in ("stall_seconds", "split_bytes", "split_pause", "delay_seconds", "lifetime"):
            pair = getattr(self, name)
            if pair is not None and not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {pair!r}")
        if self.split_bytes[0] < 1:
            raise ValueError("split_bytes must start at 1 or more")


CLEAN = FaultProfile()


@dataclasses.dataclass
class FaultCounters:
    """What the proxy did so far."""

    connections: int = 0
    refused: int = 0
    upstream_failed: int = 0
    cuts: int = 0
    lifetime_cuts: int = 0
    stalls: int = 0
    stall_cuts: int = 0
    splits: int = 0
    delays: int = 0
    chunks_up: int = 0
    chunks_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _Connection:
    """One proxied connection: two sockets, two pumps, gates to stall each direction."""

    def __init__(
        self,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.number = number
        self.client_reader, self.client_writer = client
        self.upstream_reader, self.upstream_writer = upstream
        self.gates = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        for gate in self.gates.values():
            gate.set()
        self.closed = asyncio.Event()
        #: set to end every stall early (on reset and on heal)
        self.wake = asyncio.Event()
        self.ended: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def writers(self) -> Iterator[asyncio.StreamWriter]:
        yield self.client_writer
        yield self.upstream_writer

    def reset(self) -> None:
        """Close both sides abruptly: a TCP reset on each, buffered data dropped."""
        if self.closed.is_set():
            return
        self.closed.set()
        for writer in self.writers():
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.wake.set()
        for gate in self.gates.values():
            gate.set()

    def end(self, direction: str, writer: asyncio.StreamWriter) -> None:
        """One side ended its stream: pass the end on (a half close); once both have ended,
        close both sockets politely."""
        if self.closed.is_set():
            return
        self.ended.add(direction)
        if len(self.ended) < 2 and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
                return
        self.closed.set()
        for each in self.writers():
            each.close()
        self.wake.set()
        for gate in self.gates.values():
            gate.set()


class FaultProxy:
    """See the module docstring. Use it as ``async with FaultProxy(port, seed=1) as proxy:`` or
    call :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        target_port: int,
        *,
        seed: int = 0,
        profile: FaultProfile = CLEAN,
        target_host: str = "127.0.0.1",
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.seed = seed
        self.profile = profile
        self.connect_timeout = connect_timeout
        self.counters = FaultCounters()
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted = 0
        self._heals = 0

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: where clients should connect."""
        if self.port is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def live(self) -> int:
        """How many connections are open right now."""
        return len(self._connections)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, reset every connection, cancel and await every task."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._connections):
            conn.reset()
        tasks = set(self._tasks)
        for conn in self._connections:
            tasks |= conn.tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._connections.clear()
        self._tasks.clear()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_profile(self, profile: FaultProfile) -> None:
        """Use ``profile`` from now on, for new and already open connections alike."""
        self.profile = profile

    def heal(self) -> None:
        """Forward faithfully from now on and release every stall."""
        self.profile = CLEAN
        self._heals += 1
        for conn in self._connections:
            conn.wake.set()
            for gate in conn.gates.values():
                gate.set()

    def cut_all(self) -> int:
        """Reset every open connection now; returns how many."""
        conns = [c for c in self._connections if not c.closed.is_set()]
        for conn in conns:
            conn.reset()
        self.counters.cuts += len(conns)
        return len(conns)

    # ------------------------------------------------------------------ internals

    def _spawn(self, coro: object, conn: _Connection | None = None) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        owner = conn.tasks if conn is not None else self._tasks
        owner.add(task)
        task.add_done_callback(owner.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # stopping
            writer.transport.abort()
            return
        # The accept callback runs as its own task; track it so stop() can cancel it.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # Cancelled by stop(). Ending normally keeps asyncio's start_server callback from
            # logging the cancellation as an error; nothing awaits this task but stop().
            pass
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self._accepted
        self._accepted += 1
        self.counters.connections += 1
        rng = random.Random(f"{self.seed}:{number}:accept")
        profile = self.profile
        if rng.random() < profile.refuse:
            self.counters.refused += 1
            _abort(writer)
            return
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port),
                self.connect_timeout,
            )
        except (OSError, TimeoutError):
            self.counters.upstream_failed += 1
            _abort(writer)
            return
        except asyncio.CancelledError:  # stop() while connecting upstream
            _abort(writer)
            raise
        conn = _Connection(number, (reader, writer), upstream)
        self._connections.add(conn)
        try:
            self._spawn(self._pump(conn, UP), conn)
            self._spawn(self._pump(conn, DOWN), conn)
            if profile.lifetime is not None:
                life = rng.uniform(*profile.lifetime)
                self._spawn(self._expire(conn, life), conn)
            await conn.closed.wait()
            # Let the pumps see the closed sockets and end; cancel whatever is still waiting.
            for task in list(conn.tasks):
                task.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            conn.reset()
            self._connections.discard(conn)

    async def _expire(self, conn: _Connection, life: float) -> None:
        await asyncio.sleep(life)
        if not conn.closed.is_set():
            self.counters.lifetime_cuts += 1
            conn.reset()

    async def _pump(self, conn: _Connection, direction: str) -> None:
        rng = random.Random(f"{self.seed}:{conn.number}:{direction}")
        if direction == UP:
            reader, writer = conn.client_reader, conn.upstream_writer
        else:
            reader, writer = conn.upstream_reader, conn.client_writer
        try:
            while not conn.closed.is_set():
                data = await reader.read(READ_SIZE)
                if not data:
                    conn.end(direction, writer)
                    return
                await self._forward(conn, direction, data, writer, rng)
        except (OSError, asyncio.IncompleteReadError):
            conn.reset()

    async def _forward(
        self,
        conn: _Connection,
        direction: str,
        data: bytes,
        writer: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        profile = self.profile
        # Draw every decision for this chunk up front, so the sequence of draws (and thus the
        # fate of later chunks) does not depend on which branch is taken.
        roll_cut, roll_stall, roll_split, roll_delay = (rng.random() for _ in range(4))
        cut_at = rng.randrange(len(data)) if len(data) > 1 else 0
        stall_for = rng.uniform(*profile.stall_seconds)
        stall_both = rng.random() < profile.stall_both
        stall_cut = rng.random() < profile.stall_then_cut
        delay_for = rng.uniform(*profile.delay_seconds)
        piece_rng = random.Random(rng.random())

        await conn.gates[direction].wait()
        if conn.closed.is_set():
            return
        if direction == UP:
            self.counters.chunks_up += 1
        else:
            self.counters.chunks_down += 1
        if roll_delay < profile.delay:
            self.counters.delays += 1
            await asyncio.sleep(delay_for)
        if roll_stall < profile.stall:
            self.counters.stalls += 1
            gates = list(conn.gates.values()) if stall_both else [conn.gates[direction]]
            heals = self._heals
            conn.wake.clear()
            for gate in gates:
                gate.clear()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.wake.wait(), stall_for)
            finally:
                for gate in gates:
                    gate.set()
            if conn.closed.is_set():
                return
            if stall_cut and heals == self._heals:  # after heal() it resumes
                self.counters.stall_cuts += 1
                conn.reset()
                return
        if roll_cut < profile.cut:
            await self._write(conn, direction, writer, data[:cut_at])
            self.counters.cuts += 1
            conn.reset()
            return
        if roll_split < profile.split and len(data) > 1:
            self.counters.splits += 1
            at = 0
            while at < len(data) and not conn.closed.is_set():
                size = piece_rng.randint(*profile.split_bytes)
                await self._write(conn, direction, writer, data[at : at + size])
                at += size
                pause = piece_rng.uniform(*profile.split_pause)
                if pause > 0:
                    await asyncio.sleep(pause)
            return
        await self._write(conn, direction, writer, data)

    async def _write(
        self, conn: _Connection, direction: str, writer: asyncio.StreamWriter, data: bytes
    ) -> None:
        if not data or conn.closed.is_set():
            return
        writer.write(data)
        await writer.drain()
        if direction == UP:
            self.counters.bytes_up += len(data)
        else:
            self.counters.bytes_down += len(data)


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
