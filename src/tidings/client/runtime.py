"""The asyncio driver of the engine: one WebSocket connection, timers, and effect application.

Everything the engine decides is applied here, in order, by :meth:`Runtime.flush`: the store
effects of a batch are committed in one transaction first, the client is told what changed,
then the frames go out (so an ``Ack`` never precedes its write, and a ``Send`` never precedes
its ``sending`` row). One task (:meth:`Runtime._run`) feeds the engine: frames and
connection events from the socket tasks arrive on a queue and are taken in bursts, so a burst
of envelopes costs one transaction and one ``Ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tidings.protocol import (
    MAX_FRAME_BYTES,
    ClientFrame,
    DeviceAccepted,
    Rejected,
    Send,
    ServerFrame,
    StaleDevices,
    decode_server_frame,
    encode,
)

from . import engine as fx
from .e2ee import IdentityBlocked
from .errors import ServerRefused
from .sealer import Sealer
from .store import Changes, Store

log = logging.getLogger("tidings.client")

#: seconds allowed for opening the WebSocket (TCP + HTTP upgrade)
OPEN_TIMEOUT = 10.0
#: seconds close() waits for the WebSocket close handshake
CLOSE_TIMEOUT = 2.0
#: queue items taken in one go before their effects are applied
BURST = 1024


@dataclass(frozen=True, slots=True)
class _Opened:
    generation: int
    socket: ClientConnection


@dataclass(frozen=True, slots=True)
class _Failed:
    generation: int
    error: str


@dataclass(frozen=True, slots=True)
class _Closed:
    generation: int
    error: str


@dataclass(frozen=True, slots=True)
class _Frame:
    generation: int
    data: bytes


@dataclass(frozen=True, slots=True)
class _Local:
    """A frame made on this side (a Send refused before it left: identity changed)."""

    generation: int
    frame: ServerFrame


_Inbound = _Opened | _Failed | _Closed | _Frame | _Local | None  # None: just wake up

#: called with each applied batch: its effects and what the store changed
Listener = Callable[[list[fx.Effect], Changes], None]
#: called for a RefreshConversation effect (runs as its own task)
Refresher = Callable[[str], Awaitable[None]]


class Runtime:
    """Runs one :class:`~tidings.client.engine.Engine` against the server at ``ws_url``."""

    def __init__(
        self,
        engine: fx.Engine,
        store: Store,
        ws_url: str,
        token: str,
        listener: Listener,
        refresher: Refresher,
        sealer: Sealer | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.ws_url = ws_url
        self._token = token
        self._listener = listener
        self._refresher = refresher
        self._inbound: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._generation = 0
        self._socket: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        #: encrypts Sends before they leave (one task, so a conversation's order holds)
        self.sealer = sealer
        self._sends: asyncio.Queue[tuple[int, Send]] = asyncio.Queue()
        self._sending: asyncio.Task[None] | None = None

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._main is None:
            self._main = asyncio.create_task(self._run(), name="tidings-client")
        if self.sealer is not None and self._sending is None:
            self._sending = asyncio.create_task(self._seal_loop(), name="tidings-sealer")
        self.engine.start(self.now())
        await self.flush()

    async def pause(self) -> None:
        """Close the connection and stay offline (background)."""
        self.engine.stop()
        await self.flush()

    async def close(self) -> None:
        """Ack what is stored, close the socket cleanly, stop every task."""
        await self.pause()
        for task in (self._main, self._sending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._main = self._sending = None
        if self._closing:  # let the close handshake carry the last frames out
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT)
        for task in list(self._tasks | self._closing):
            task.cancel()
        for task in list(self._tasks | self._closing):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def wake(self) -> None:
        """Make the main loop look at the engine's timers again."""
        self._inbound.put_nowait(None)

    # ------------------------------------------------------------------ effects

    async def flush(self) -> None:
        """Apply every effect the engine has produced, in order (see the module docstring)."""
        async with self._lock:
            while effects := self.engine.take_effects():
                await self._apply(effects)

    async def _apply(self, effects: list[fx.Effect]) -> None:
        changes = self.store.apply(effects)
        # Events are queued before the first await: no other task sees the new rows in the
        # store before subscribers have the events about them.
        try:
            self._listener(effects, changes)
        except Exception:  # a broken event must not cost us the frames and connects below
            log.exception("the client failed to report changes")
        if changes.undecryptable and self.sealer is not None:
            self._spawn(self.sealer.send_resets())
        for effect in effects:
            match effect:
                case fx.Transmit(frame=Send() as send) if self.sealer is not None:
                    self._sends.put_nowait((self._generation, send))
                case fx.Transmit():
                    await self._transmit(effect.frame)
                case fx.Connect():
                    self._generation += 1
                    self._spawn(self._connect(self._generation))
                case fx.Disconnect():
                    self._generation += 1  # events of the old socket are ignored from now on
                    await self._close_socket()
                case fx.RefreshConversation():
                    self._spawn(self._refresher(effect.conv))
                case _:
                    pass  # store effects (applied above) and notices (for the listener)

    async def transmit(self, frame: ClientFrame) -> bool:
        """Put a frame on the wire now (the sealer's DeviceSends); False without a socket."""
        return await self._transmit(frame)

    async def _transmit(self, frame: ClientFrame) -> bool:
        socket = self._socket
        if socket is None:
            return False  # the engine learns about the closed socket from its reader
        try:
            await socket.send(encode(frame))
        except websockets.ConnectionClosed:
            return False
        return True

    async def _seal_loop(self) -> None:
        """Encrypt and send the engine's Sends, one at a time. A Send that cannot be sealed
        now (no connection, the server is busy) waits for the engine's resend; one to a
        contact whose verified identity changed fails with ``identity_changed``."""
        assert self.sealer is not None
        while True:
            generation, send = await self._sends.get()
            if generation != self._generation or send.id not in self.engine.outbox:
                continue  # from an old connection (the engine resends after Welcome) or done
            try:
                sealed = await self.sealer.seal(send)
            except IdentityBlocked as blocked:
                refusal = Rejected(id=send.id, conv=send.conv, code=blocked.code)
                self._inbound.put_nowait(_Local(generation, refusal))
                continue
            except ServerRefused as refused:
                if refused.status in (403, 404):  # not a member (any more): for good
                    refusal = Rejected(id=send.id, conv=send.conv, code=refused.code)
                    self._inbound.put_nowait(_Local(generation, refusal))
                else:
                    log.info("a message could not be encrypted yet: %s", refused.code)
                continue
            except Exception as exc:  # ClientError, TimeoutError, crypto trouble
                log.info("a message could not be encrypted yet: %s", type(exc).__name__)
                continue
            finally:
                self._listener([], Changes())  # identity keys learnt while sealing
            if generation == self._generation:
                await self._transmit(sealed)

    def _sealer_frame(self, frame: ServerFrame) -> None:
        """Frames about encryption: resend a stale Send at once, settle a DeviceSend."""
        if self.sealer is None:
            return
        if isinstance(frame, StaleDevices):
            self.sealer.e2ee.apply_stale(frame)
            item = self.engine.outbox.get(frame.id)
            if item is not None:
                resend = Send(id=item.id, conv=item.conv, payload=item.payload)
                self._sends.put_nowait((self._generation, resend))
        elif isinstance(frame, DeviceAccepted):
            self.sealer.device_accepted(frame)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("client background task failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ the socket

    async def _connect(self, generation: int) -> None:
        try:
            socket = await connect(
                self.ws_url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                compression=None,
                max_size=MAX_FRAME_BYTES,
                ping_interval=None,  # the engine sends application pings
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self._inbound.put_nowait(_Failed(generation, _describe(exc)))
            return
        self._inbound.put_nowait(_Opened(generation, socket))
        error = "closed"
        try:
            async for data in socket:
                if isinstance(data, bytes):
                    self._inbound.put_nowait(_Frame(generation, data))
        except websockets.ConnectionClosed as exc:
            error = _describe(exc)
        finally:
            self._inbound.put_nowait(_Closed(generation, error))

    async def _close_socket(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            task = asyncio.create_task(socket.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            wakeup = self.engine.next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - self.now())
            try:
                async with asyncio.timeout(timeout):
                    first = await self._inbound.get()
            except TimeoutError:
                first = None
            items = [first]
            while len(items) < BURST and not self._inbound.empty():
                items.append(self._inbound.get_nowait())
            async with self._lock:
                try:
                    for item in items:
                        self._feed(item)
                    self.engine.tick(self.now())
                    while effects := self.engine.take_effects():
                        await self._apply(effects)
                except Exception:  # keep the client alive; the next connection resyncs
                    log.exception("the client runtime failed to apply effects")

    def _feed(self, item: _Inbound) -> None:
        if item is None or item.generation != self._generation:
            if isinstance(item, _Opened):  # a socket we no longer want
                self._spawn(item.socket.close())
            return
        now = self.now()
        match item:
            case _Frame():
                try:
                    frame = decode_server_frame(item.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.warning("ignoring an undecodable frame from the server")
                    return
                if isinstance(frame, StaleDevices | DeviceAccepted):
                    self._sealer_frame(frame)
                self.engine.receive(frame, now)
            case _Local():
                self.engine.receive(item.frame, now)
            case _Opened():
                self._socket = item.socket
                self.engine.connected(now)
            case _Failed():
                log.info("connecting failed: %s", item.error)
                self.engine.connect_failed(now, item.error)
            case _Closed():
                self._socket = None
                self.engine.disconnected(now, item.error)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
