"""The WebSocket endpoint at :data:`tidings.protocol.routes.WEBSOCKET_PATH`: authenticate the
upgrade request, then serve the device with a :class:`DeviceConnection`.

:class:`Gateway` does that as a plain ASGI application, and the server runs it in front of the
framework (:class:`WebSocketFirst`): an open WebSocket then holds a few coroutine frames of
its own and none of the framework's (its middleware, router and connection objects, some
5 KiB for every idle connection), and each frame sent skips their wrappers. :func:`endpoint`
offers the same gateway as the framework's route, which is what test clients that drive the
Litestar application in-process reach."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import WebsocketRouteHandler

from tidings.protocol import ErrorCode
from tidings.protocol.close import CloseCode
from tidings.protocol.rest import ApiError
from tidings.protocol.routes import WEBSOCKET_PATH
from tidings.server.auth import Authenticator
from tidings.server.bus import Bus
from tidings.server.delivery import DeliveryService
from tidings.server.ws.connection import QUEUE_BYTES, DeviceConnection
from tidings.server.ws.uvicorn_protocol import FRAMES_EXTENSION, LeanWebSocketProtocol

WsConnection = WebSocket[object, object, State]
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
#: An ASGI 3 application (scope, receive, send).
Asgi = Callable[..., Awaitable[None]]


class AsgiSocket:
    """:class:`~tidings.server.ws.connection.Socket` over the ASGI ``receive`` and ``send`` of
    an accepted WebSocket."""

    __slots__ = ("_protocol", "_receive", "_send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        extensions = scope.get("extensions") or {}
        #: the server's own WebSocket protocol (uvicorn_protocol.LeanWebSocketProtocol), if any
        protocol = extensions.get(FRAMES_EXTENSION)
        self._protocol = protocol if isinstance(protocol, LeanWebSocketProtocol) else None

    def write_now(self, frames: list[bytes]) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.write_frames(frames)

    async def receive_frame(self) -> bytes | str | None:
        while True:
            try:
                message = await self._receive()
            except WebSocketDisconnect:  # the framework's receive, called once more
                return None
            kind = message["type"]
            if kind == "websocket.receive":
                data: bytes | None = message.get("bytes")
                if data is not None:
                    return data
                text: str | None = message.get("text")
                return text or ""
            if kind == "websocket.disconnect":
                return None

    async def send_frame(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data, "text": None})

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


class Gateway:
    """The WebSocket endpoint as an ASGI application. It takes no framework dependencies:
    what it needs is bound here, so an open connection keeps nothing of a request machinery."""

    __slots__ = ("_auth", "_bus", "_idle_timeout", "_queue_bytes", "_queue_frames", "_service")

    def __init__(
        self,
        auth: Authenticator,
        service: DeliveryService,
        bus: Bus,
        *,
        idle_timeout: float,
        queue_frames: int,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self._auth = auth
        self._service = service
        self._bus = bus
        self._idle_timeout = idle_timeout
        self._queue_frames = queue_frames
        self._queue_bytes = queue_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        device = await self._auth.device(_authorization(scope))
        if device is None:
            await _refuse_handshake(scope, receive, send)
            return
        if not await _accept(receive, send):
            return
        connection = DeviceConnection(
            AsgiSocket(scope, receive, send),
            device,
            self._service,
            self._bus,
            idle_timeout=self._idle_timeout,
            queue_frames=self._queue_frames,
            queue_bytes=self._queue_bytes,
        )
        await connection.run()


class WebSocketFirst:
    """ASGI: a WebSocket to :data:`WEBSOCKET_PATH` goes to ``websocket`` (the gateway), every
    other scope (HTTP, lifespan) to ``app``.

    Not a coroutine function itself: it returns the chosen application's coroutine, so a
    connection holds no frame of it (uvicorn must then be told the interface is ASGI 3)."""

    __slots__ = ("app", "websocket")

    def __init__(self, app: Asgi, websocket: Asgi) -> None:
        self.app = app
        self.websocket = websocket

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket" and scope["path"] == WEBSOCKET_PATH:
            return self.websocket(scope, receive, send)
        return self.app(scope, receive, send)


def endpoint(gateway: Gateway) -> WebsocketRouteHandler:
    """The gateway as the framework's WebSocket route."""

    @websocket(WEBSOCKET_PATH)
    async def route(socket: WsConnection) -> None:
        await gateway(socket.scope, socket.receive, socket.send)

    return route


async def _accept(receive: Receive, send: Send) -> bool:
    """Take the ``websocket.connect`` event and accept; False if the peer left before."""
    if (await receive())["type"] != "websocket.connect":
        return False
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    return True


def _authorization(scope: Scope) -> str | None:
    """The Authorization header, straight from the scope (a Headers object built from it
    would stay in the scope: some 1.5 KiB for every open connection)."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            text: str = value.decode("latin-1")
            return text
    return None


async def _refuse_handshake(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer the upgrade request with HTTP 401 (a client sees the status and our error body),
    or, on an ASGI server without the response extension, accept and close with 4401."""
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        if await _accept(receive, send):
            await AsgiSocket(scope, receive, send).close(
                CloseCode.UNAUTHORIZED, "missing or invalid device token"
            )
        return
    await receive()  # websocket.connect
    body = msgspec.json.encode(
        ApiError(code=ErrorCode.UNAUTHORIZED, message="missing or invalid device token")
    )
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
