"""One WebSocket connection of one authenticated device (the protocol flow is in
:mod:`tidings.protocol.frames`, the close codes in :mod:`tidings.protocol.close`).

A connection runs two loops: the reader (in the task that called :meth:`DeviceConnection.run`)
decodes client frames and dispatches them through :data:`~tidings.server.ws.handlers.HANDLERS`,
which start a task per request (so many Sends of one device share a group commit). What is
queued in the bounded outbox during one turn of the event loop is written at its end, in one
write to the socket when the socket takes it at once (a callback: no task); otherwise the pump
task writes it, waiting for the transport, and ends once it drained the outbox. Live frames
from the bus never wait: if the outbox is full the device is too slow and is disconnected; it
catches up from its pending queue when it comes back. An idle connection holds no other task,
no timer of its own (one :class:`~tidings.server.ws.idle.IdleWatch` per event loop keeps every
idle deadline) and an empty outbox. Where a connection stands is its
:class:`~tidings.server.ws.phase.Phase`.

What a slow or silent peer can hold is bounded in bytes: live frames may fill the outbox up to
``queue_bytes`` (and ``queue_frames``), answers to requests a little more; beyond that the
connection is closed with 1013 (try again later) and the device catches up from its pending
queue on its next connection, nothing lost. The idle deadline moves only on **progress**: a
frame that moves state (Hello, Send, DeviceSend, Read, Fetch, an Ack that raises one of this
connection's cursors), or a Ping when the pump could write something since the previous Ping
(or had nothing to write): a keepalive proves the peer is there only if it also drains its
outbox. A peer that never reads therefore cannot keep a connection with a growing outbox: the
byte bound closes it, or else the idle timeout does once its socket stops taking frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Protocol

import msgspec

from tidings.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ClientFrame,
    Error,
    ErrorCode,
    Hello,
    Synced,
    decode_client_frame,
    encode,
)
from tidings.protocol.close import CloseCode
from tidings.server.bus import Bus, Delivery
from tidings.server.delivery import DeliveryService, Device
from tidings.server.domain import Refused
from tidings.server.sendlimits import SendOrder
from tidings.server.ws.handlers import HANDLERS, frame_tag
from tidings.server.ws.idle import Cell, watch_idle
from tidings.server.ws.outbox import Outbox
from tidings.server.ws.phase import OPEN, Phase, PhaseError, check_transition

log = logging.getLogger(__name__)

#: Requests of one connection being worked on at once; the reader waits beyond that.
MAX_IN_FLIGHT = 256
#: Seconds allowed for a close frame to go out before the socket is just dropped.
CLOSE_GRACE = 1.0
#: Default of the byte bound on live frames queued for one connection.
QUEUE_BYTES = 4 * 1024 * 1024
#: Room above that bound for answers to requests in flight (they come in bursts when a group
#: commit completes many Sends at once; a Fetch's Batch may be a whole MAX_FRAME_BYTES).
REPLY_HEADROOM_BYTES = 4 * MAX_FRAME_BYTES
#: Most bytes the pump writes to the transport at once (beyond one frame): what a reader that
#: stopped reading may hold in the transport's buffer besides its outbox.
BURST_BYTES = 256 * 1024


class Socket(Protocol):
    """The transport under a connection: an accepted WebSocket."""

    async def receive_frame(self) -> bytes | str | None:
        """The next message (``str`` for a text frame); ``None`` once the peer is gone."""

    async def send_frame(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    # A socket may also have ``write_now(frames: list[bytes]) -> bool``: write the frames in
    # one go if it takes them now (open, its transport not paused), else write nothing and
    # return False (the pump then sends them one by one, waiting for the transport).


class DeviceConnection:
    """Serves one device over one socket until either side closes. Implements the bus's
    :class:`~tidings.server.bus.base.Subscriber`."""

    def __init__(
        self,
        socket: Socket,
        device: Device,
        service: DeliveryService,
        bus: Bus,
        *,
        idle_timeout: float,
        queue_frames: int,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self._socket = socket
        self.device = device
        self.service = service
        self._bus = bus
        self._idle_timeout = idle_timeout
        self._queue_frames = queue_frames
        self._queue_bytes = queue_bytes
        self._phase = Phase.NEW
        # None in the outbox tells the pump to close the socket. Bus frames may fill it up to
        # queue_frames; the headroom above is for answers to requests in flight, which arrive
        # in bursts when a group commit completes many Sends at once.
        self._outbox = Outbox(queue_frames + MAX_IN_FLIGHT, queue_bytes + REPLY_HEADROOM_BYTES)
        #: which conversations wait for a message the send limits refused (sendlimits.py);
        #: made at the first Send
        self.send_order: SendOrder | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Until the replay after Hello is complete (phase LIVE), live frames wait here, then go
        # out minus the envelopes the replay already carried.
        self._held: list[Delivery] = []
        self._held_bytes = 0
        self._replayed: dict[str, int] = {}
        self._replayed_dseq = 0
        self._close_code = CloseCode.NORMAL
        self._close_reason = ""
        self._last_heard = 0.0
        #: frames the pump has written, and that count at the previous Ping
        self._written = 0
        self._written_at_ping = -1
        #: the highest cursors this connection's Acks named (None until the first one)
        self._acked: dict[str, int] | None = None
        self._acked_dseq = 0
        #: what the idle watch holds of this connection while run() goes on
        self._idle_cell: Cell = [None]
        self._reader: asyncio.Task[object] | None = None
        #: set when the pump's end cancelled the reader (not a cancellation from outside)
        self._pump_stopped_reader = False
        #: the pump, while the outbox holds something the socket did not take at once
        self._pump_task: asyncio.Task[bool] | None = None
        #: a :meth:`_flush` is scheduled for the end of this turn of the event loop
        self._flushing = False
        #: the socket's ``write_now``, if it has one
        self._write_now: Callable[[list[bytes]], bool] | None = getattr(socket, "write_now", None)
        #: requests being worked on, and the reader's wait for room below MAX_IN_FLIGHT
        self._in_flight = 0
        self._room: asyncio.Future[None] | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    def _advance(self, to: Phase) -> None:
        """Move to phase ``to``; :class:`PhaseError` if the transition table does not list it."""
        check_transition(self._phase, to)
        self._phase = to

    # ------------------------------------------------------------------ Subscriber

    @property
    def account_id(self) -> str:
        return self.device.account_id

    @property
    def device_id(self) -> int:
        return self.device.device_id

    def deliver(self, delivery: Delivery) -> None:
        phase = self._phase
        if phase is Phase.LIVE:
            outbox = self._outbox
            if (
                outbox.qsize() >= self._queue_frames
                or outbox.nbytes() + len(delivery.data) > self._queue_bytes
            ):
                self.close(CloseCode.TRY_AGAIN_LATER, "too slow")
                return
            outbox.put_nowait(delivery.data)
            self._start_pump()
        elif phase in OPEN:
            self._held.append(delivery)
            self._held_bytes += len(delivery.data)
            if len(self._held) > self._queue_frames or self._held_bytes > self._queue_bytes:
                self.close(CloseCode.TRY_AGAIN_LATER, "too slow")

    def replaced(self) -> None:
        self.close(CloseCode.REPLACED, "replaced by a newer connection")

    def revoked(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "the device was removed")

    # ------------------------------------------------------------------ lifecycle

    def close(self, code: CloseCode, reason: str, *, flush: bool = False) -> None:
        """Close soon: send a close frame, after what is queued if ``flush`` (and there is
        room), else dropping it (the pending queue still has every envelope)."""
        if self._phase not in OPEN:
            return
        self._advance(Phase.CLOSING)
        self._close_code = code
        self._close_reason = reason
        if not flush or self._outbox.full():
            self._outbox.clear()
        self._held, self._held_bytes = [], 0
        self._outbox.put_nowait(None)
        self._start_pump()
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
        # The calling task reads; an idle connection has no other task.
        self._advance(Phase.AWAITING_HELLO)
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        self._idle_cell[0] = self
        watch_idle(self._last_heard + self._idle_timeout, self._idle_cell)
        await self._bus.attach(self)
        self._reader = reader = asyncio.current_task()
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            # Cancelled by _pump_done (the pump finished: the socket is closed or dropped), and
            # not from outside as well: that is the end of this connection, not an error.
            if not self._pump_stopped_reader or reader is None or reader.uncancel() > 0:
                raise
        except Exception:
            log.exception("reading from %s/%d failed", self.account_id, self.device_id)
        finally:
            self._advance(Phase.CLOSED)
            self._idle_cell[0] = None
            await self._bus.detach(self)
            if self._tasks:  # an Ack right before the client's close (an app pausing) counts
                await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            pump = self._pump_task
            rest = (*self._tasks, pump) if pump is not None else tuple(self._tasks)
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    async def _put(self, frame: bytes) -> None:
        """Queue a frame of the replay, waiting for room in the outbox."""
        await self._outbox.put(frame)
        self._start_pump()

    def _start_pump(self) -> None:
        """Something was queued: have it written at the end of this turn of the event loop
        (:meth:`_flush`), unless a pump is already writing."""
        if self._pump_task is None and not self._flushing and self._phase is not Phase.CLOSED:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what was queued during the turn in one go if the socket takes it now (the
        common case: no task, no future); otherwise, or for the close frame, start the pump,
        which waits for the transport."""
        self._flushing = False
        if self._pump_task is not None or self._phase is Phase.CLOSED:
            return
        outbox = self._outbox
        write_now = self._write_now
        while write_now is not None and outbox.qsize():
            frames = outbox.take_ready(BURST_BYTES)
            if not frames:
                break  # the close frame is next: the pump sends it
            if not write_now(frames):
                outbox.put_back(frames)
                break
            self._written += len(frames)
        if outbox.qsize():
            self._pump_task = pump = asyncio.create_task(self._pump())
            pump.add_done_callback(self._pump_done)

    def _pump_done(self, pump: asyncio.Task[bool]) -> None:
        if pump is self._pump_task:
            self._pump_task = None
        # A pump that drained the outbox just ends. One that closed the socket, failed to write
        # (the peer is gone) or was given up on (_abort) ends the connection.
        ended = pump.cancelled() or pump.exception() is not None or pump.result()
        if ended and self._phase is not Phase.CLOSED and self._reader is not None:
            self._pump_stopped_reader = True
            self._reader.cancel()

    def check_idle(self) -> None:
        # Called by the idle watch when the deadline set at the last check passed: the deadline
        # moves only then, so there is no per-frame timer work.
        if self._phase not in OPEN:
            return
        deadline = self._last_heard + self._idle_timeout
        if asyncio.get_running_loop().time() >= deadline:
            self.close(CloseCode.IDLE, "idle timeout")
        else:
            watch_idle(deadline, self._idle_cell)

    async def _pump(self) -> bool:
        """Write what is queued until the outbox is empty (False) or the close frame is sent
        (True)."""
        outbox, socket = self._outbox, self._socket
        # Everything queued by the time the pump wakes goes out together: with a socket that
        # can write at once (``write_now``), in one write to the transport, which is what a
        # burst costs (the Accepteds of a group commit, the receipts of a big group's acks).
        write_now = self._write_now
        while True:
            if outbox.empty():
                # Drained: the next frame queued starts another pump. Said here, not in the
                # done callback, so that a frame queued before that callback runs is not left.
                self._pump_task = None
                return False
            data = outbox.get_nowait()
            if data is None:
                break
            frames = [data, *outbox.take_ready(BURST_BYTES)] if outbox.qsize() else [data]
            if write_now is None or not write_now(frames):
                for frame in frames:  # the socket waits for the transport to drain
                    await socket.send_frame(frame)
            self._written += len(frames)
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await socket.close(int(self._close_code), self._close_reason)
        except TimeoutError:
            pass  # the peer is not reading; returning drops the socket
        return True

    # ------------------------------------------------------------------ for the handlers

    def progress(self) -> None:
        """The peer sent a frame that moves state: move the idle deadline."""
        self._last_heard = asyncio.get_running_loop().time()

    def pinged(self) -> None:
        """A Ping is progress only if the peer drains its outbox: the pump wrote a frame since
        the previous Ping, or has nothing to write."""
        if self._outbox.empty() or self._written != self._written_at_ping:
            self.progress()
        self._written_at_ping = self._written

    def acked(self, upto: dict[str, int], device_upto: int) -> None:
        """An Ack is progress if it raises one of the cursors this connection was acked to."""
        moved = device_upto > self._acked_dseq
        self._acked_dseq = max(self._acked_dseq, device_upto)
        if upto:
            acked = self._acked
            if acked is None:
                acked = self._acked = {}
            for conv, seq in upto.items():
                if seq > acked.get(conv, 0):
                    acked[conv] = seq
                    moved = True
        if moved:
            self.progress()

    def reply(self, frame: msgspec.Struct) -> None:
        """Queue a direct answer; unlike bus frames it is not held back during the replay.
        Answers count against the outbox like everything else."""
        if self._phase not in OPEN:
            return
        try:
            self._outbox.put_nowait(encode(frame))
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, "too slow")
        else:
            self._start_pump()

    def error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        self.reply(Error(code=code, message=message, ref=ref))

    async def start(self, work: Coroutine[None, None, None]) -> None:
        """Run a request as its own task, at most MAX_IN_FLIGHT at once (the reader waits for
        room: back-pressure on a peer that sends faster than the store answers)."""
        while self._in_flight >= MAX_IN_FLIGHT:
            self._room = room = asyncio.get_running_loop().create_future()
            try:
                await room
            finally:
                self._room = None
        self._in_flight += 1
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Refused):  # a typed refusal that changed nothing, not a fault
            self.error(exc.code, exc.message)
        elif exc is not None:
            log.error("request of %s/%d failed", self.account_id, self.device_id, exc_info=exc)
            self.error(ErrorCode.INTERNAL, "internal error")

    async def hello(self, hello: Hello) -> None:
        """Start the replay that answers Hello, or refuse another protocol version."""
        if hello.version != PROTOCOL_VERSION:
            self.error(
                ErrorCode.UNSUPPORTED_VERSION,
                f"this server speaks version {PROTOCOL_VERSION}",
                "hello",
            )
            self.close(CloseCode.UNSUPPORTED_VERSION, "unsupported version", flush=True)
            return
        self._advance(Phase.SYNCING)
        await self.start(self._replay(hello))

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        while True:
            data = await self._socket.receive_frame()
            if data is None:
                return
            if self._phase not in OPEN:
                continue
            frame = self._decode(data)
            if frame is not None:
                await self._dispatch(frame)

    def _decode(self, data: bytes | str) -> ClientFrame | None:
        """The frame in ``data``, or None after answering why there is none."""
        if isinstance(data, str):
            self.error(ErrorCode.BAD_FRAME, "frames are binary MessagePack")
            return None
        if len(data) > MAX_FRAME_BYTES:
            self.error(
                ErrorCode.FRAME_TOO_LARGE, f"frame of {len(data)} bytes over {MAX_FRAME_BYTES}"
            )
            return None
        try:
            return decode_client_frame(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.error(ErrorCode.BAD_FRAME, str(exc))
            return None

    async def _dispatch(self, frame: ClientFrame) -> None:
        handler = HANDLERS[type(frame)]
        if self._phase not in handler.phases:
            self.error(ErrorCode.BAD_FRAME, handler.refusal, frame_tag(frame))
            return
        try:
            await handler.serve(self, frame)
        except PhaseError as exc:
            self.error(ErrorCode.BAD_FRAME, str(exc), frame_tag(frame))

    # ------------------------------------------------------------------ the replay

    async def _replay(self, hello: Hello) -> None:
        try:
            await self._sync(hello)
        except Exception:
            # Without Synced the device would wait forever: let it reconnect instead.
            log.exception("sync of %s/%d failed", self.account_id, self.device_id)
            self.close(CloseCode.INTERNAL_ERROR, "sync failed")

    async def _sync(self, hello: Hello) -> None:
        device, service = self.device, self.service
        # A cursor says the device already stored everything up to it: the same as an Ack.
        cursors = {conv: seq for conv, seq in hello.cursors.items() if seq > 0}
        if cursors:
            await service.ack(device, cursors)
        welcome, receipts = await service.welcome(device, hello.cursors)
        await self._put(encode(welcome))
        for receipt in receipts:
            await self._put(encode(receipt))
        # To-device messages first: a Sender Key distribution must arrive before the group
        # messages that need it.
        async for device_envelope in service.replay_devices(device):
            if self._phase is not Phase.SYNCING:
                return
            self._replayed_dseq = device_envelope.dseq
            await self._put(encode(device_envelope))
        async for batch in service.replay(device, welcome.heads):
            if self._phase is not Phase.SYNCING:
                return
            self._replayed[batch.conv] = batch.envelopes[-1].seq
            await self._put(encode(batch))
        await self._put(encode(Synced()))
        if self._phase is not Phase.SYNCING:
            return
        self._advance(Phase.LIVE)
        held, self._held, self._held_bytes = self._held, [], 0
        for delivery in held:
            if delivery.conv is not None and delivery.seq <= self._replayed.get(delivery.conv, 0):
                continue
            if delivery.dseq and delivery.dseq <= self._replayed_dseq:
                continue
            self.deliver(delivery)
