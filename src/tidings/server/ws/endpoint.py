"""The WebSocket endpoint at :data:`tidings.protocol.routes.WEBSOCKET_PATH`: authenticate the
upgrade request, then serve the device with a :class:`DeviceConnection`."""

from __future__ import annotations

import contextlib

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


class LitestarSocket:
    """:class:`~tidings.server.ws.connection.Socket` over an accepted Litestar WebSocket."""

    def __init__(self, socket: WsConnection) -> None:
        self._socket = socket
        extensions = socket.scope.get("extensions") or {}
        #: the server's own WebSocket protocol (uvicorn_protocol.LeanWebSocketProtocol), if any
        protocol = extensions.get(FRAMES_EXTENSION)
        self._protocol = protocol if isinstance(protocol, LeanWebSocketProtocol) else None

    def write_now(self, frames: list[bytes]) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.write_frames(frames)

    async def receive_frame(self) -> bytes | str | None:
        while True:
            try:
                message = await self._socket.receive()
            except WebSocketDisconnect:
                return None
            if message["type"] == "websocket.disconnect":
                return None
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    return data
                return message.get("text") or ""

    async def send_frame(self, data: bytes) -> None:
        await self._socket.send({"type": "websocket.send", "bytes": data, "text": None})

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await self._socket.close(code, reason)


def endpoint(
    auth: Authenticator,
    service: DeliveryService,
    bus: Bus,
    *,
    idle_timeout: float,
    queue_frames: int,
    queue_bytes: int = QUEUE_BYTES,
) -> WebsocketRouteHandler:
    """The WebSocket handler. It takes no Litestar dependencies: what it needs is bound here,
    so an open connection keeps nothing of the framework's request machinery."""

    @websocket(WEBSOCKET_PATH)
    async def gateway(socket: WsConnection) -> None:
        device = await auth.device(_authorization(socket))
        if device is None:
            await _refuse_handshake(socket)
            return
        await socket.accept()
        connection = DeviceConnection(
            LitestarSocket(socket),
            device,
            service,
            bus,
            idle_timeout=idle_timeout,
            queue_frames=queue_frames,
            queue_bytes=queue_bytes,
        )
        await connection.run()

    return gateway


def _authorization(socket: WsConnection) -> str | None:
    """The Authorization header, straight from the scope: ``socket.headers`` would build a
    Headers object that stays in the scope (some 1.5 KiB for every open connection)."""
    for name, value in socket.scope["headers"]:
        if name.lower() == b"authorization":
            return value.decode("latin-1")
    return None


async def _refuse_handshake(socket: WsConnection) -> None:
    """Answer the upgrade request with HTTP 401 (a client sees the status and our error body),
    or, on an ASGI server without the response extension, accept and close with 4401."""
    extensions = socket.scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        await socket.accept()
        await socket.close(CloseCode.UNAUTHORIZED, "missing or invalid device token")
        return
    await socket.receive()  # websocket.connect
    body = msgspec.json.encode(
        ApiError(code=ErrorCode.UNAUTHORIZED, message="missing or invalid device token")
    )
    await socket.send(
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
    await socket.send({"type": "websocket.http.response.body", "body": body, "more_body": False})
