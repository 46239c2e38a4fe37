"""The asyncio driver of the client core: one WebSocket connection, timers, and the effects.

The runtime decides nothing; it runs what the core asks for. Everything the engine decides is
applied here, in order, by :meth:`Runtime.flush`: the store effects of a batch are opened
(decrypted, :class:`~tidings.client.core.opening.Opener`) and committed in one transaction
first, the client is told what changed, then the frames go out (so an ``Ack`` never precedes
its write, and a ``Send`` never precedes its ``sending`` row). One task (:meth:`Runtime._run`)
feeds the engine: frames and connection events from the socket tasks arrive on a queue and are
taken in bursts, so a burst of envelopes costs one transaction and one ``Ack``.

Outgoing messages are sealed by :class:`~tidings.client.core.sealing.Sealer`, one at a time
(so a conversation's order holds): :meth:`Runtime.drive` performs the requests it yields
(claims and device lists through the one REST caller, ``DeviceSend`` frames on the socket) and
sends the answers back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

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
    TypingNotice,
    decode_server_frame,
    encode,
    routes,
)
from tidings.protocol import keys as wire
from tidings.protocol.close import CloseCode
from tidings.protocol.frames import ChannelPosted

from . import tls
from .core import engine
from .core.opening import Opener, writes
from .core.sealing import (
    ClaimKeys,
    EndToEnd,
    FetchDevices,
    Later,
    LookupConversation,
    Refused,
    Request,
    RequestFailed,
    Sealed,
    Sealer,
    SendToDevices,
    Steps,
)
from .errors import ClientError, ConnectionEnded, NotConnected, ServerRefused
from .network import diagnose
from .rest import Rest
from .store import Changes, LocalStore
from .wswrite import send_binaries

log = logging.getLogger("tidings.client")

#: seconds allowed for opening the WebSocket (TCP + HTTP upgrade)
OPEN_TIMEOUT = 10.0
#: seconds close() waits for the WebSocket close handshake
CLOSE_TIMEOUT = 2.0
#: queue items taken in one go before their effects are applied
BURST = 1024
#: Sends the sealer stops taking more at (one transaction for their session state, then on the
#: wire); the engine's are queued in chunks of at most this many
SEAL_BURST = 256
#: seconds to wait for DeviceAccepted before the message waits for its next resend
DEVICE_SEND_TIMEOUT = 10.0
#: HTTP statuses refusing the WebSocket upgrade → the close code they amount to
_FATAL_STATUSES = {401: CloseCode.UNAUTHORIZED, 426: CloseCode.UNSUPPORTED_VERSION}

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Opened:
    generation: int
    socket: ClientConnection


@dataclass(frozen=True, slots=True)
class _Failed:
    generation: int
    error: str
    #: the close code a refused upgrade amounts to (HTTP 401: 4401), if it is fatal
    code: int | None = None


@dataclass(frozen=True, slots=True)
class _Closed:
    generation: int
    error: str
    #: the close code the server sent, if any
    code: int | None = None


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
Listener = Callable[[list[engine.Effect], Changes], None]
#: called for a RefreshConversation effect (runs as its own task)
Refresher = Callable[[str], Awaitable[None]]
#: conversation id → (kind "direct" | "group", member account ids), for sealing
Lookup = Callable[[str], Awaitable[tuple[str, frozenset[str]]]]


class Runtime:
    """Runs one :class:`~tidings.client.core.engine.Engine` against the server at ``ws_url``,
    with the device's :class:`~tidings.client.core.sealing.EndToEnd` sealing what goes out and
    opening what comes in."""

    def __init__(
        self,
        engine: engine.Engine,
        store: LocalStore,
        e2ee: EndToEnd,
        rest: Rest,
        ws_url: str,
        token: str,
        listener: Listener,
        refresher: Refresher,
        lookup: Lookup,
    ) -> None:
        self.engine = engine
        self.store = store
        self.e2ee = e2ee
        self.rest = rest
        self.opener = Opener(e2ee)
        self.sealer = Sealer(e2ee)
        self._lookup = lookup
        self.ws_url = ws_url
        #: the TLS context of a wss:// connection (client/tls.py); None: certifi's CAs
        self.ssl_context: ssl.SSLContext | None = None
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
        #: Sends to seal, taken by one task (so a conversation's order holds)
        self._sends: asyncio.Queue[tuple[int, list[Send]]] = asyncio.Queue()
        self._sending: asyncio.Task[None] | None = None
        #: applied to each Send right before sealing (mentions and quiet, tidings.client.push)
        self.annotate: Callable[[Send], Send] | None = None
        #: DeviceSends waiting for their DeviceAccepted
        self._waiting: dict[uuid.UUID, asyncio.Future[DeviceAccepted]] = {}
        #: why the last connect failed (None once one succeeded): its cause for the user
        self.last_failure: NotConnected | None = None
        #: whether a WebSocket was ever opened by this runtime
        self.ever_connected = False
        #: shown every frame before the engine (receipt times); TypingNotice frames go only
        #: here (ephemeral: the engine has nothing to do with them)
        self.observe: Callable[[ServerFrame], None] | None = None
        #: ChannelPosted frames go only here (client/channels.py), never to the engine
        self.on_channel_post: Callable[[ChannelPosted], None] | None = None

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._main is None:
            self._main = asyncio.create_task(self._run(), name="tidings-client")
        if self._sending is None:
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

    async def _apply(self, effects: list[engine.Effect]) -> None:
        changes = self._write(effects)
        # Events are queued before the first await: no other task sees the new rows in the
        # store before subscribers have the events about them.
        try:
            self._listener(effects, changes)
        except Exception:  # a broken event must not cost us the frames and connects below
            log.exception("the client failed to report changes")
        if changes.undecryptable:
            self._spawn(self.drive(self.sealer.send_resets()))
        sends: list[Send] = []  # to the sealer together, as made on this connection
        for effect in effects:
            match effect:
                case engine.Transmit(frame=Send() as send):
                    sends.append(send)
                case engine.Transmit():
                    await self._transmit(effect.frame)
                case engine.Connect():
                    sends = self._to_seal(sends)
                    self._generation += 1
                    self._spawn(self._connect(self._generation))
                case engine.Disconnect():
                    sends = self._to_seal(sends)
                    self._generation += 1  # events of the old socket are ignored from now on
                    await self._close_socket()
                case engine.RefreshConversation():
                    self._spawn(self._refresher(effect.conv_id))
                case engine.ProtocolViolation():
                    log.warning(
                        "ignored a protocol error of the server: %s in %s",
                        effect.event,
                        effect.phase.value,
                    )
                case engine.FatalNotice():
                    log.warning(
                        "the connection ended for good (%d): %s", effect.code, effect.reason
                    )
                case _:
                    pass  # store effects (applied above) and notices (for the listener)
        self._to_seal(sends)

    def _to_seal(self, sends: list[Send]) -> list[Send]:
        """Queue ``sends`` for the sealer, tagged with the current connection, in chunks of
        at most :data:`SEAL_BURST`; a new empty list for the next ones."""
        for start in range(0, len(sends), SEAL_BURST):
            self._sends.put_nowait((self._generation, sends[start : start + SEAL_BURST]))
        return []

    def _write(self, effects: list[engine.Effect]) -> Changes:
        """Open the batch's envelopes and store it, in one transaction: a decrypted message
        and the session state it advanced commit together, or neither does."""
        if not writes(effects):
            return Changes()
        with self.store.transaction():
            return self.store.apply(self.opener.open(effects))

    # ------------------------------------------------------------------ the core's requests

    async def drive(self, steps: Steps[_T], atomic: bool = False) -> _T:
        """Run ``steps`` of the sealing core to the end, performing each request it yields
        and sending the answer back in; a request that fails is thrown in as
        :class:`RequestFailed`. :class:`ConnectionEnded` (401) ends it. ``atomic``: what the
        steps write between two requests commits as one transaction (each of their own
        transactions a savepoint in it), before the request is made or the result returned."""
        answer: object = None
        failed: RequestFailed | None = None
        try:
            while True:
                try:
                    with self._segment(atomic):
                        request = steps.send(answer) if failed is None else steps.throw(failed)
                except StopIteration as done:
                    return cast("_T", done.value)
                answer, failed = None, None
                try:
                    answer = await self._perform(request)
                except ConnectionEnded:
                    raise
                except ServerRefused as refused:
                    failed = RequestFailed(refused.code, refused.status)
                except ClientError as error:
                    failed = RequestFailed(error.code)
                except TimeoutError:
                    failed = RequestFailed("timeout")
        finally:
            steps.close()

    @contextlib.contextmanager
    def _segment(self, atomic: bool) -> Iterator[None]:
        """One transaction around a synchronous stretch of the sealing core (``atomic``). It
        commits also when the stretch raises: each unit of work in it is a savepoint that
        either completed or rolled itself back, as its own transactions would have."""
        db = self.store.db
        if not atomic or db.in_transaction:
            yield
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            with self.store.keys.guarded():
                yield
        finally:
            db.execute("COMMIT")

    async def _perform(self, request: Request) -> object:
        match request:
            case ClaimKeys():
                body = wire.ClaimKeys(devices={a: list(d) for a, d in request.devices.items()})
                return await self.rest.call(routes.CLAIM_KEYS, list[wire.PreKeyBundles], body)
            case FetchDevices():
                found = await self.rest.call(
                    routes.CONVERSATION_DEVICES, wire.DeviceMap, conv=request.conv_id
                )
                return found.devices
            case LookupConversation():
                return await self._lookup(request.conv_id)
            case SendToDevices():
                return await self._device_send(request)

    async def _device_send(self, request: SendToDevices) -> DeviceAccepted:
        """Send to single devices and wait until the server queued them."""
        frame = request.frame
        future: asyncio.Future[DeviceAccepted] = asyncio.get_running_loop().create_future()
        self._waiting[frame.id] = future
        try:
            if not await self._transmit(frame):
                raise TimeoutError("no connection")
            return await asyncio.wait_for(future, DEVICE_SEND_TIMEOUT)
        finally:
            self._waiting.pop(frame.id, None)

    async def transmit_now(self, frame: ClientFrame) -> bool:
        """Send an ephemeral frame (Typing) if the server has greeted us; False otherwise."""
        if self.engine.phase not in (engine.Phase.REPLAY, engine.Phase.LIVE):
            return False
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

    async def _transmit_all(self, frames: list[ClientFrame]) -> bool:
        """:meth:`_transmit` of each of ``frames``, in order, with one write to the socket."""
        socket = self._socket
        if socket is None:
            return False
        try:
            await send_binaries(socket, [encode(frame) for frame in frames])
        except websockets.ConnectionClosed:
            return False
        return True

    async def _seal_loop(self) -> None:
        """Seal and send the engine's Sends in queue order, as many as are waiting at once
        (the queue's chunks until they hold :data:`SEAL_BURST`): their session state commits
        in one transaction, before any of them goes on the wire. What the sealer cannot seal
        now waits for the engine's resend; what it refuses for good fails like a
        ``Rejected``."""
        while True:
            waiting = [await self._sends.get()]
            taken = len(waiting[0][1])
            while taken < SEAL_BURST and not self._sends.empty():
                waiting.append(self._sends.get_nowait())
                taken += len(waiting[-1][1])
            generation = self._generation
            outbox = self.engine.outbox
            sends = [
                send if self.annotate is None else self.annotate(send)
                for made_in, chunk in waiting
                if made_in == generation  # else from an old connection: resent after Welcome
                for send in chunk
                if send.id in outbox  # else answered already
            ]
            if not sends:
                continue
            try:
                outcomes = await self.drive(self.sealer.seal_all(sends), atomic=True)
            except Exception as exc:  # 401 (the engine already knows), crypto trouble
                log.info("a message could not be encrypted: %s", type(exc).__name__)
                continue
            finally:
                self._listener([], Changes())  # identity keys learnt while sealing
            sealed: list[ClientFrame] = []
            for send, outcome in zip(sends, outcomes, strict=True):
                match outcome:
                    case Sealed():
                        sealed.append(outcome.send)
                    case Refused():
                        refusal = Rejected(id=send.id, conv=send.conv, code=outcome.code)
                        self._inbound.put_nowait(_Local(generation, refusal))
                    case Later():
                        log.info("a message could not be encrypted yet: %s", outcome.reason)
            if sealed and generation == self._generation:
                await self._transmit_all(sealed)  # in order, written to the socket at once

    def _sealer_frame(self, frame: ServerFrame) -> None:
        """Frames about encryption: resend a stale Send at once, settle a DeviceSend."""
        if isinstance(frame, StaleDevices):
            self.e2ee.apply_stale(frame)
            resend = self.engine.unsent(frame.id)
            if resend is not None:
                self._sends.put_nowait((self._generation, [resend]))
        elif isinstance(frame, DeviceAccepted):
            future = self._waiting.get(frame.id)
            if future is not None and not future.done():
                future.set_result(frame)

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

    def _tls(self) -> ssl.SSLContext:
        return self.ssl_context if self.ssl_context is not None else tls.ssl_context()

    async def _connect(self, generation: int) -> None:
        try:
            socket = await connect(
                self.ws_url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                compression=None,
                max_size=MAX_FRAME_BYTES,
                ssl=self._tls() if self.ws_url.startswith("wss://") else None,
                ping_interval=None,  # the engine sends application pings
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
            )
        except websockets.InvalidStatus as exc:
            fatal = _FATAL_STATUSES.get(exc.response.status_code)
            self._inbound.put_nowait(_Failed(generation, _describe(exc), fatal))
            return
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            failure = await diagnose(exc, self.ws_url)
            self.last_failure = failure
            self._inbound.put_nowait(_Failed(generation, failure.message))
            return
        self.last_failure = None
        self.ever_connected = True
        self._inbound.put_nowait(_Opened(generation, socket))
        error = "closed"
        received: int | None = None
        try:
            async for data in socket:
                if isinstance(data, bytes):
                    self._inbound.put_nowait(_Frame(generation, data))
        except websockets.ConnectionClosed as exc:
            error = _describe(exc)
        finally:
            if socket.protocol.close_rcvd is not None:
                received = int(socket.protocol.close_rcvd.code)
            self._inbound.put_nowait(_Closed(generation, error, received))

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
                if self.observe is not None:
                    try:
                        self.observe(frame)
                    except Exception:
                        log.exception("the client failed to observe a frame")
                if isinstance(frame, TypingNotice):
                    return
                if isinstance(frame, ChannelPosted):
                    if self.on_channel_post is not None:
                        self.on_channel_post(frame)
                    return
                self.engine.receive(frame, now)
            case _Local():
                self.engine.receive(item.frame, now)
            case _Opened():
                self._socket = item.socket
                self.engine.connected(now)
            case _Failed():
                log.info("connecting failed: %s", item.error)
                self.engine.connect_failed(now, item.error, item.code)
            case _Closed():
                self._socket = None
                self.engine.disconnected(now, item.error, item.code)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
