"""uvicorn's sans-I/O WebSocket protocol with lighter per-connection structures.

Every open WebSocket holds uvicorn's receive queue (an :class:`asyncio.Queue`: three deques of
some 760 bytes each, even when empty) and its ``writable`` flag (an :class:`asyncio.Event`, one
more deque), and the handshake's request and response for as long as the connection lasts.
With tens of thousands of idle connections that is about 5 KiB each for nothing.
:class:`LeanWebSocketProtocol` swaps the queue and flag for equivalents that hold a list, and
futures only while someone waits, and lets go of the handshake once it is done: its request and
response, the headers in the ASGI scope, and the request that websockets' parser would keep in
its generator for as long as the connection lasts (:class:`_FrameParser`). Its attributes live
in slots: uvicorn sets more than an instance dict can share with its class, which would give
every connection a dict of its own (some 1.6 KiB).

It also answers a text frame that is not valid UTF-8 without uvicorn's ERROR traceback (which
anyone could use to flood the log): RFC 6455 (section 8.1) requires failing such a connection,
so it is closed with 1007 (invalid frame payload data), as uvicorn does, and logged in one line
at INFO, at most once per :data:`INVALID_UTF8_LOG_INTERVAL` seconds per process with the
number of connections closed since. (A valid text frame reaches the device connection, which
answers ``Error bad_frame``: frames are binary MessagePack.) Everything else is uvicorn's own
code.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Generator
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

#: The key of the ASGI scope's ``extensions`` under which the connection's protocol offers
#: :meth:`LeanWebSocketProtocol.write_frames` (the application's sockets use it when present).
FRAMES_EXTENSION = "tidings.frames"

#: Close code for a text frame that is not UTF-8 (RFC 6455 section 7.4.1).
INVALID_DATA = 1007
#: Seconds between two log lines about invalid UTF-8 text frames.
INVALID_UTF8_LOG_INTERVAL = 60.0


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def _binary_header(size: int) -> bytes:
    """The header of a final, unmasked binary frame of ``size`` bytes (RFC 6455 section 5.2),
    as websockets' ``Frame.serialize`` writes it for a server without extensions."""
    if size < 126:
        return bytes((0x82, size))
    if size < 65536:
        return _HEADER_16.pack(0x82, 126, size)
    return _HEADER_64.pack(0x82, 127, size)


class _Throttle:
    """Says whether to log now: the first time, then at most once per ``interval`` seconds;
    counts what it held back in between."""

    __slots__ = ("_interval", "_next", "held_back")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = float("-inf")
        self.held_back = 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            self.held_back += 1
            return False
        self._next = now + self._interval
        return True


_invalid_utf8 = _Throttle(INVALID_UTF8_LOG_INTERVAL)


class _Inbox:
    """What uvicorn uses of :class:`asyncio.Queue` (``put_nowait``, ``get``, ``empty``):
    unbounded, first in first out."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                # Pass a wake-up meant for this getter on to the next one.
                if self._items and getter.done() and not getter.cancelled():
                    self._wake_one()
                raise
        if not self._getters:
            self._getters = None
        return self._items.pop(0)

    def _wake_one(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return


class _Flag:
    """What uvicorn uses of :class:`asyncio.Event` (``set``, ``clear``, ``is_set``, ``wait``)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class _HandshakeEnd(Protocol):
    """Comes right after :class:`ServerProtocol` in :class:`_FrameParser`'s MRO, so that the
    ``yield from super().parse()`` that ends ``ServerProtocol.parse`` returns at once."""

    def parse(self) -> Generator[None]:
        return
        yield


class _FrameParser(ServerProtocol, _HandshakeEnd):
    """websockets' server protocol, whose parser lets go of the handshake request.

    ``ServerProtocol.parse`` reads the request, hands it on as an event and then parses frames
    inside the same generator, whose frame keeps the request (and its headers, some 2.5 KiB)
    until the connection ends. Here that generator ends with the handshake, before any byte of
    a frame is read, and a fresh one parses the frames."""

    def parse(self) -> Generator[None]:
        yield from ServerProtocol.parse(self)  # the handshake, up to _HandshakeEnd
        yield from Protocol.parse(self)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with :class:`_Inbox` and :class:`_Flag`, that
    forgets the handshake once it is done."""

    # Every attribute uvicorn 0.55 sets (others it may add go to the instance dict).
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()
        # Nothing was received yet: the parser can start over as a _FrameParser.
        conn = self.conn
        conn.__class__ = _FrameParser
        conn.parser = conn.parse()
        next(conn.parser)

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after it sent the handshake response. The handshake's
        # request and response (with their header objects, some 2 KiB) and the request headers
        # in the scope (the application read what it needed before accepting) are not used
        # again; the scope itself lives on in the application's frames.
        super().start_keepalive()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        headers = self.scope["headers"]
        if isinstance(headers, list):  # uvicorn builds a list; other copies of the scope share it
            headers.clear()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FRAMES_EXTENSION] = self

    def connection_lost(self, exc: Exception | None) -> None:
        scope = getattr(self, "scope", None)
        if scope is not None:  # the scope no longer points back at the protocol
            (scope.get("extensions") or {}).pop(FRAMES_EXTENSION, None)
        super().connection_lost(exc)

    def write_frames(self, frames: list[bytes]) -> bool:
        """Write binary frames to the transport in one go, if the connection is open and the
        transport is not paused (its buffer over the high-water mark); False, writing nothing,
        otherwise: then the ASGI ``send`` path waits for the transport to drain. A burst costs
        one write instead of an ASGI message, a wait and a write per frame."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        conn = self.conn
        if conn.extensions or conn.debug:  # websockets frames them (never so on our server)
            try:
                for frame in frames:
                    conn.send_binary(frame)  # raises at the first frame unless OPEN
            except InvalidState:
                return False
            self.transport.write(b"".join(conn.data_to_send()))
            return True
        if conn.state is not State.OPEN or conn.expect_continuation_frame:
            return False
        # An unmasked, unfragmented binary frame is a header and the payload as it is: built
        # here, the same payload (a group's envelope) costs no framing work per member.
        parts = conn.data_to_send()  # whatever websockets queued first (a pong, say)
        for frame in frames:
            parts.append(_binary_header(len(frame)))
            parts.append(frame)
        self.transport.write(b"".join(parts))
        return True

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                self._fail_invalid_utf8()
                return
        super().send_receive_event_to_app()

    def _fail_invalid_utf8(self) -> None:
        """Close with 1007 as uvicorn does, minus its traceback at ERROR."""
        if _invalid_utf8.ready():
            held_back, _invalid_utf8.held_back = _invalid_utf8.held_back, 0
            log.info(
                "closed a WebSocket (%d): a text frame was not valid UTF-8 "
                "(%d more such closes not logged since the last line)",
                INVALID_DATA,
                held_back,
            )
        self.conn.send_close(INVALID_DATA, "invalid UTF-8")
        self.handle_parser_exception()
