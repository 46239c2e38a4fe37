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

from tidings.protocol import MAX_FRAME_BYTES, ClientFrame, decode_server_frame, encode

from . import engine as fx
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


_Inbound = _Opened | _Failed | _Closed | _Frame | None  # None: just wake up

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

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._main is None:
            self._main = asyncio.create_task(self._run(), name="tidings-client")
        self.engine.start(self.now())
        await self.flush()

    async def pause(self) -> None:
        """Close the connection and stay offline (background)."""
        self.engine.stop()
        await self.flush()

    async def close(self) -> None:
        """Ack what is stored, close the socket cleanly, stop every task."""
        await self.pause()
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
            self._main = None
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
        for effect in effects:
            match effect:
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

    async def _transmit(self, frame: ClientFrame) -> None:
        socket = self._socket
        if socket is None:
            return  # the engine learns about the closed socket from its reader
        with contextlib.suppress(websockets.ConnectionClosed):
            await socket.send(encode(frame))

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
                self.engine.receive(frame, now)
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
