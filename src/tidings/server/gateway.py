"""One WebSocket connection of one authenticated device (the protocol flow is in
:mod:`tidings.protocol.frames`).

A connection runs two loops: the reader (in the task that called :meth:`Connection.run`)
decodes client frames and starts a task per request (so many Sends of one device share a group
commit), and the pump task writes the bounded outbox to the socket. Live frames from the bus
never wait: if the outbox is full the device is too slow and is disconnected; it catches up
from its pending queue when it comes back. An idle connection holds no other task, no timer
of its own (one :class:`_IdleWatch` per event loop keeps every idle deadline) and an empty
outbox.

Close codes the server uses (besides the WebSocket standard ones):

- 1011 internal error: the replay after Hello failed; reconnect
- 1013 try again later: the device could not keep up with its frames
- 4401 unauthorized: the handshake could not be refused with HTTP 401, or the device was
  removed (DELETE /v1/devices/{id}, or another device replaced the account's identity key)
- 4408 idle: nothing received for ``idle_timeout`` seconds
- 4409 replaced: a newer connection of the same device took over
- 4426 unsupported protocol version
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
from collections.abc import Coroutine
from typing import Protocol

import msgspec

from tidings.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    DeviceSend,
    Error,
    ErrorCode,
    Fetch,
    Hello,
    Ping,
    Pong,
    Read,
    Send,
    Synced,
    decode_client_frame,
    encode,
)
from tidings.server.bus import Bus, Delivery
from tidings.server.delivery import DeliveryEngine, Device
from tidings.server.store import Refused

log = logging.getLogger(__name__)

#: Requests of one connection being worked on at once; the reader waits beyond that.
MAX_IN_FLIGHT = 256
#: Seconds allowed for a close frame to go out before the socket is just dropped.
CLOSE_GRACE = 1.0


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    IDLE = 4408
    REPLACED = 4409
    UNSUPPORTED_VERSION = 4426


class _Outbox:
    """The bounded frame queue of one connection, for one consumer (the pump). Lighter than
    :class:`asyncio.Queue` (three deques of some 760 bytes each): an idle connection holds an
    empty list and nothing else."""

    __slots__ = ("_getter", "_items", "_limit", "_putters")

    def __init__(self, limit: int) -> None:
        self._items: list[bytes | None] = []
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self._limit

    def put_nowait(self, item: bytes | None) -> None:
        if len(self._items) >= self._limit:
            raise asyncio.QueueFull
        self._items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def put(self, item: bytes | None) -> None:
        while len(self._items) >= self._limit:
            putter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(putter)
            try:
                await putter
            finally:
                if putter in self._putters:
                    self._putters.remove(putter)
        self.put_nowait(item)

    def get_nowait(self) -> bytes | None:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        putters = self._putters
        if putters:
            putter = putters.pop(0)
            if not putter.done():
                putter.set_result(None)
        return item

    def clear(self) -> None:
        self._items = []
        putters, self._putters = self._putters, None
        for putter in putters or ():
            if not putter.done():
                putter.set_result(None)

    async def get(self) -> bytes | None:
        while not self._items:
            self._getter = getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                self._getter = None
        return self.get_nowait()


class _IdleWatch:
    """The idle deadlines of every connection of one event loop under a single timer: a heap
    of (deadline, n, cell) instead of a timer per connection, the cell holding the connection
    until it ends. A connection is looked at when its deadline passes and pushed back with a
    later one if it was heard from since."""

    __slots__ = ("_at", "_count", "_heap", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, list[Connection | None]]] = []
        self._count = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = float("inf")

    def watch(self, deadline: float, cell: list[Connection | None]) -> None:
        heapq.heappush(self._heap, (deadline, next(self._count), cell))
        if deadline < self._at:
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, float("inf")
        heap, now = self._heap, self._loop.time()
        while heap and heap[0][0] <= now:
            connection = heapq.heappop(heap)[2][0]
            if connection is not None:
                connection._check_idle()  # may push it back with its next deadline
        if heap:
            self._arm(heap[0][0])
        elif _idle_watches.get(self._loop) is self:
            del _idle_watches[self._loop]


#: One watch per running event loop (dropped when it has nothing left to watch).
_idle_watches: dict[asyncio.AbstractEventLoop, _IdleWatch] = {}


def _watch_idle(deadline: float, cell: list[Connection | None]) -> None:
    loop = asyncio.get_running_loop()
    watch = _idle_watches.get(loop)
    if watch is None:
        watch = _idle_watches[loop] = _IdleWatch(loop)
    watch.watch(deadline, cell)


class Socket(Protocol):
    """The transport under a connection: an accepted WebSocket."""

    async def receive_frame(self) -> bytes | str | None:
        """The next message (``str`` for a text frame); ``None`` once the peer is gone."""

    async def send_frame(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Connection:
    """Serves one device over one socket until either side closes. Implements the bus's
    :class:`~tidings.server.bus.base.Subscriber`."""

    def __init__(
        self,
        socket: Socket,
        device: Device,
        engine: DeliveryEngine,
        bus: Bus,
        *,
        idle_timeout: float,
        queue_frames: int,
    ) -> None:
        self._socket = socket
        self._device = device
        self._engine = engine
        self._bus = bus
        self._idle_timeout = idle_timeout
        self._queue_frames = queue_frames
        # None in the outbox tells the pump to close the socket. Bus frames may fill it up to
        # queue_frames; the headroom above is for answers to requests in flight, which arrive
        # in bursts when a group commit completes many Sends at once.
        self._outbox = _Outbox(queue_frames + MAX_IN_FLIGHT)
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._hello_done = False
        # Until the replay after Hello is complete, live frames wait here, then go out minus
        # the envelopes the replay already carried.
        self._syncing = True
        self._held: list[Delivery] = []
        self._replayed: dict[str, int] = {}
        self._replayed_dseq = 0
        self._close_code: CloseCode | None = None
        self._close_reason = ""
        self._last_heard = 0.0
        #: what the idle watch holds of this connection while run() goes on
        self._idle_cell: list[Connection | None] = [None]
        self._reader: asyncio.Task[object] | None = None
        self._reading = False
        self._stop_reading = False
        self._pump_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ Subscriber

    @property
    def account_id(self) -> str:
        return self._device.account_id

    @property
    def device_id(self) -> int:
        return self._device.device_id

    def deliver(self, delivery: Delivery) -> None:
        if self._close_code is not None:
            return
        if self._syncing:
            self._held.append(delivery)
            if len(self._held) > self._queue_frames:
                self.close(CloseCode.TRY_AGAIN_LATER, "too slow")
            return
        if self._outbox.qsize() >= self._queue_frames:
            self.close(CloseCode.TRY_AGAIN_LATER, "too slow")
            return
        self._outbox.put_nowait(delivery.data)

    def replaced(self) -> None:
        self.close(CloseCode.REPLACED, "replaced by a newer connection")

    def revoked(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "the device was removed")

    # ------------------------------------------------------------------ lifecycle

    def close(self, code: CloseCode, reason: str, *, flush: bool = False) -> None:
        """Close soon: send a close frame, after what is queued if ``flush`` (and there is
        room), else dropping it (the pending queue still has every envelope)."""
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        if not flush or self._outbox.full():
            self._outbox.clear()
        self._outbox.put_nowait(None)
        # A peer that does not read can keep the pump stuck in a send forever: give up on it.
        asyncio.get_running_loop().call_later(2 * CLOSE_GRACE, self._abort)
        log.info(
            "closing connection of %s/%d: %d %s",
            self.account_id,
            self.device_id,
            int(code),
            reason,
        )

    def _abort(self) -> None:
        if self._pump_task is not None and not self._pump_task.done():
            log.info("dropping connection of %s/%d", self.account_id, self.device_id)
            self._pump_task.cancel()

    async def run(self) -> None:
        # The calling task reads; the pump is the only other task of an idle connection.
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        self._idle_cell[0] = self
        _watch_idle(self._last_heard + self._idle_timeout, self._idle_cell)
        await self._bus.attach(self)
        self._reader = reader = asyncio.current_task()
        self._pump_task = pump = asyncio.create_task(self._pump())
        pump.add_done_callback(self._pump_done)
        self._reading = True
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            # Cancelled by _pump_done (the pump finished: the socket is closed or dropped), and
            # not from outside as well: that is the end of this connection, not an error.
            if not self._stop_reading or reader is None or reader.uncancel() > 0:
                raise
        except Exception:
            log.exception("reading from %s/%d failed", self.account_id, self.device_id)
        finally:
            self._reading = False
            self._idle_cell[0] = None
            await self._bus.detach(self)
            self._close_code = self._close_code or CloseCode.NORMAL
            for task in (pump, *self._tasks):
                task.cancel()
            await asyncio.gather(pump, *self._tasks, return_exceptions=True)

    def _pump_done(self, _: asyncio.Task[None]) -> None:
        if self._reading and self._reader is not None:
            self._stop_reading = True
            self._reader.cancel()

    def _check_idle(self) -> None:
        # Called by the idle watch when the deadline set at the last check passed: the deadline
        # moves only then, so there is no per-frame timer work.
        if self._close_code is not None:
            return
        deadline = self._last_heard + self._idle_timeout
        if asyncio.get_running_loop().time() >= deadline:
            self.close(CloseCode.IDLE, "idle timeout")
        else:
            _watch_idle(deadline, self._idle_cell)

    async def _pump(self) -> None:
        outbox, socket = self._outbox, self._socket
        while True:
            data = await outbox.get()
            if data is None:
                break
            await socket.send_frame(data)
        code = self._close_code or CloseCode.NORMAL
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await socket.close(int(code), self._close_reason)
        except TimeoutError:
            pass  # the peer is not reading; returning drops the socket

    def _reply(self, frame: msgspec.Struct) -> None:
        """Queue a direct answer; unlike bus frames it is not held back during the replay.
        Answers count against the outbox like everything else."""
        if self._close_code is not None:
            return
        try:
            self._outbox.put_nowait(encode(frame))
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, "too slow")

    def _error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        self._reply(Error(code=code, message=message, ref=ref))

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self._socket.receive_frame()
            if data is None:
                return
            self._last_heard = loop.time()
            if self._close_code is not None:
                continue
            if isinstance(data, str):
                self._error(ErrorCode.BAD_FRAME, "frames are binary MessagePack")
                continue
            if len(data) > MAX_FRAME_BYTES:
                self._error(
                    ErrorCode.FRAME_TOO_LARGE, f"frame of {len(data)} bytes over {MAX_FRAME_BYTES}"
                )
                continue
            try:
                frame = decode_client_frame(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._error(ErrorCode.BAD_FRAME, str(exc))
                continue
            if isinstance(frame, Ping):
                self._reply(Pong(n=frame.n))
            elif isinstance(frame, Hello):
                if self._hello_done:
                    self._error(ErrorCode.BAD_FRAME, "hello already received", "hello")
                elif frame.version != PROTOCOL_VERSION:
                    self._error(
                        ErrorCode.UNSUPPORTED_VERSION,
                        f"this server speaks version {PROTOCOL_VERSION}",
                        "hello",
                    )
                    self.close(CloseCode.UNSUPPORTED_VERSION, "unsupported version", flush=True)
                else:
                    self._hello_done = True
                    await self._start(self._hello(frame))
            elif not self._hello_done:
                self._error(ErrorCode.BAD_FRAME, "the first frame must be hello", frame_tag(frame))
            elif isinstance(frame, Send):
                await self._start(self._send(frame))
            elif isinstance(frame, DeviceSend):
                await self._start(self._device_send(frame))
            elif isinstance(frame, Ack):
                await self._start(self._engine.ack(self._device, frame.upto, frame.device_upto))
            elif isinstance(frame, Read):
                await self._start(self._read(frame))
            elif isinstance(frame, Fetch):
                await self._start(self._fetch(frame))

    async def _start(self, work: Coroutine[None, None, None]) -> None:
        """Run a request as its own task, at most MAX_IN_FLIGHT at once."""
        await self._in_flight.acquire()
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight.release()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("request of %s/%d failed", self.account_id, self.device_id, exc_info=exc)
            self._error(ErrorCode.INTERNAL, "internal error")

    # ------------------------------------------------------------------ requests

    async def _hello(self, hello: Hello) -> None:
        try:
            await self._sync(hello)
        except Exception:
            # Without Synced the device would wait forever: let it reconnect instead.
            log.exception("sync of %s/%d failed", self.account_id, self.device_id)
            self.close(CloseCode.INTERNAL_ERROR, "sync failed")

    async def _sync(self, hello: Hello) -> None:
        device, engine = self._device, self._engine
        # A cursor says the device already stored everything up to it: the same as an Ack.
        cursors = {conv: seq for conv, seq in hello.cursors.items() if seq > 0}
        if cursors:
            await engine.ack(device, cursors)
        welcome, receipts = await engine.welcome(device, hello.cursors)
        await self._outbox.put(encode(welcome))
        for receipt in receipts:
            await self._outbox.put(encode(receipt))
        # To-device messages first: a Sender Key distribution must arrive before the group
        # messages that need it.
        async for device_envelope in engine.replay_devices(device):
            if self._close_code is not None:
                return
            self._replayed_dseq = device_envelope.dseq
            await self._outbox.put(encode(device_envelope))
        async for batch in engine.replay(device, welcome.heads):
            if self._close_code is not None:
                return
            self._replayed[batch.conv] = batch.envelopes[-1].seq
            await self._outbox.put(encode(batch))
        await self._outbox.put(encode(Synced()))
        self._syncing = False
        held, self._held = self._held, []
        for delivery in held:
            if delivery.conv is not None and delivery.seq <= self._replayed.get(delivery.conv, 0):
                continue
            if delivery.dseq and delivery.dseq <= self._replayed_dseq:
                continue
            self.deliver(delivery)

    async def _send(self, frame: Send) -> None:
        self._reply(await self._engine.send(self._device, frame))

    async def _device_send(self, frame: DeviceSend) -> None:
        self._reply(await self._engine.device_send(self._device, frame))

    async def _read(self, frame: Read) -> None:
        try:
            await self._engine.read(self._device, frame.conv, frame.seq)
        except Refused as refused:
            self._error(refused.code, refused.message, frame.conv)

    async def _fetch(self, frame: Fetch) -> None:
        try:
            batch = await self._engine.fetch(self._device, frame.conv, frame.after, frame.limit)
        except Refused as refused:
            self._error(refused.code, refused.message, frame.conv)
            return
        self._reply(batch)


def frame_tag(frame: msgspec.Struct) -> str:
    tag = type(frame).__struct_config__.tag
    return tag if isinstance(tag, str) else type(frame).__name__
