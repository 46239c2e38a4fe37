"""The ASGI application: REST routes, the WebSocket gateway at ``/v1/ws``, and the lifespan
that opens the store and purges expired pending entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import HTTPException, WebSocketDisconnect

from tidings.protocol import MAX_FRAME_BYTES, ErrorCode
from tidings.protocol.rest import ApiError
from tidings.server.api import Services, on_http_error, on_refused, on_unexpected, routes
from tidings.server.auth import Authenticator
from tidings.server.bus import LocalBus
from tidings.server.config import ServerConfig
from tidings.server.delivery import DeliveryEngine
from tidings.server.directory import KeyDirectory, Provisioner
from tidings.server.gateway import CloseCode, Connection
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import Refused, SqliteStore

log = logging.getLogger(__name__)

WsConnection = WebSocket[object, object, State]

#: How often expired pending entries and provisioning requests are purged (seconds).
PURGE_INTERVAL = 300.0


class LitestarSocket:
    """:class:`~tidings.server.gateway.Socket` over an accepted Litestar WebSocket."""

    def __init__(self, socket: WsConnection) -> None:
        self._socket = socket

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


def create_app(config: ServerConfig) -> Litestar:
    store = SqliteStore(config.database_path)
    bus = LocalBus()
    engine = DeliveryEngine(
        store, bus, member_cap=config.member_cap, require_e2ee=config.require_e2ee
    )
    auth = Authenticator(store)
    keys = KeyDirectory(store, claims_per_minute=config.key_claims_per_minute)

    async def removed(account_id: str, device_ids: list[int]) -> None:
        # The rows are gone: forget the cached tokens, then close the live connections.
        for device_id in device_ids:
            auth.forget(account_id, device_id)
            await bus.revoke(account_id, device_id)
        log.info("account %s: devices %s removed", account_id, device_ids)

    keys.on_removed = removed
    provisioning = Provisioner(
        store,
        per_minute=config.provisioning_per_minute,
        ttl_seconds=config.provisioning_ttl_seconds,
        max_devices=config.max_devices_per_account,
    )
    services = Services(
        config=config,
        store=store,
        engine=engine,
        auth=auth,
        keys=keys,
        provisioning=provisioning,
        account_limiter=RateLimiter(config.accounts_per_minute),
    )

    @websocket("/v1/ws")
    async def gateway(socket: WsConnection) -> None:
        device = await auth.device(_authorization(socket))
        if device is None:
            await _refuse_handshake(socket)
            return
        await socket.accept()
        connection = Connection(
            LitestarSocket(socket),
            device,
            engine,
            bus,
            idle_timeout=config.idle_timeout,
            queue_frames=config.send_queue_frames,
        )
        await connection.run()

    async def purge_forever() -> None:
        while True:
            try:
                purged = await engine.purge_expired(config.pending_ttl_days)
            except Exception:
                log.exception("purging expired pending entries failed")
            else:
                if purged:
                    log.info("purged %d expired pending entries", purged)
            await asyncio.sleep(PURGE_INTERVAL)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await store.open()
        purger = asyncio.create_task(purge_forever())
        log.info("serving data from %s", config.data_dir)
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await store.close()

    return Litestar(
        route_handlers=[*routes(services), gateway],
        lifespan=[lifespan],
        exception_handlers={
            Refused: on_refused,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        request_max_body_size=MAX_FRAME_BYTES,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


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
