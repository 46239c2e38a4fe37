"""One WebSocket connection of one authenticated device (the protocol flow is in
:mod:`tidings.protocol.frames`).

A connection runs two loops: the reader decodes client frames and starts a task per request
(so many Sends of one device share a group commit), and the pump writes the bounded outbox to
the socket. Live frames from the bus never wait: if the outbox is full the device is too slow
and is disconnected; it catches up from its pending queue when it comes back.

Close codes the server uses (besides the WebSocket standard ones):

- 1011 internal error: the replay after Hello failed; reconnect
- 1013 try again later: the device could not keep up with its frames
- 4401 unauthorized (only when the handshake could not be refused with HTTP 401)
- 4408 idle: nothing received for ``idle_timeout`` seconds
- 4409 replaced: a newer connection of the same device took over
- 4426 unsupported protocol version
"""

from __future__ import annotations

import asyncio
import enum
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
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(queue_frames + MAX_IN_FLIGHT)
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
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
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

    # ------------------------------------------------------------------ lifecycle

    def close(self, code: CloseCode, reason: str, *, flush: bool = False) -> None:
        """Close soon: send a close frame, after what is queued if ``flush`` (and there is
        room), else dropping it (the pending queue still has every envelope)."""
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        if not flush or self._outbox.full():
            while not self._outbox.empty():
                self._outbox.get_nowait()
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
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        self._idle_timer = loop.call_at(self._last_heard + self._idle_timeout, self._check_idle)
        await self._bus.attach(self)
        self._pump_task = pump = asyncio.create_task(self._pump())
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait({pump, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            await self._bus.detach(self)
            self._close_code = self._close_code or CloseCode.NORMAL
            for task in (self._reader, pump, *self._tasks):
                task.cancel()
            await asyncio.gather(self._reader, pump, *self._tasks, return_exceptions=True)

    def _check_idle(self) -> None:
        # One timer per connection, moved only when it fires: no per-frame timer work.
        loop = asyncio.get_running_loop()
        deadline = self._last_heard + self._idle_timeout
        if loop.time() >= deadline:
            self.close(CloseCode.IDLE, "idle timeout")
        elif self._close_code is None:
            self._idle_timer = loop.call_at(deadline, self._check_idle)

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
        welcome, receipts = await engine.welcome(device)
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
