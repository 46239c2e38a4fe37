"""REST routes under ``/v1`` (the table is in :mod:`tidings.protocol.rest`) and the mapping of
every failure to an :class:`~tidings.protocol.rest.ApiError` body.

Bodies are decoded and encoded with msgspec here rather than by the framework, so a bad body
gets our error shape and the JSON on the wire is exactly what ``msgspec.json`` makes of the
protocol structs on the client side.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TypeVar

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_204_NO_CONTENT,
)

import tidings
from tidings.protocol import MAX_BATCH, ErrorCode
from tidings.protocol.keys import (
    ApproveDevice,
    ClaimKeys,
    DeviceMap,
    KeyUpload,
    NewProvisioning,
)
from tidings.protocol.rest import (
    AccountCreated,
    AddMembers,
    ApiError,
    Conversation,
    CreateAccount,
    CreateDirect,
    CreateGroup,
    Health,
    Me,
    Member,
    MessagePage,
    User,
)
from tidings.server.auth import Authenticator, new_token
from tidings.server.config import ServerConfig
from tidings.server.delivery import DeliveryEngine, Device, new_id
from tidings.server.directory import KeyDirectory, Provisioner
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import ConversationRecord, Refused, Store

log = logging.getLogger(__name__)

B = TypeVar("B", bound=msgspec.Struct)
#: No authentication middleware sets user or auth: handlers authenticate themselves.
HttpRequest = Request[object, object, State]

#: HTTP status of each refusal code.
STATUS = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.INVALID_USERNAME: 400,
    ErrorCode.NOT_A_GROUP: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_MEMBER: 403,
    ErrorCode.REGISTRATION_CLOSED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PENDING: 202,
    ErrorCode.EXPIRED: 404,
    ErrorCode.ALREADY_MEMBER: 409,
    ErrorCode.GROUP_FULL: 409,
    ErrorCode.FRAME_TOO_LARGE: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.OVERLOADED: 503,
}

#: Error code of a framework-made HTTP error, by status.
_CODE_OF_STATUS = {
    400: ErrorCode.BAD_FRAME,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_FRAME,
    413: ErrorCode.FRAME_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.OVERLOADED,
}

_JSON = "application/json"
#: Largest PUT /v1/keys body: 200 Kyber prekeys in base64 JSON are about 450 kB.
MAX_KEY_UPLOAD_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    config: ServerConfig
    store: Store
    engine: DeliveryEngine
    auth: Authenticator
    keys: KeyDirectory
    provisioning: Provisioner
    #: POST /v1/accounts per client IP address
    account_limiter: RateLimiter


def json_response(
    body: object, status: int = HTTP_200_OK, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        msgspec.json.encode(body), status_code=status, media_type=_JSON, headers=headers
    )


def error_response(code: ErrorCode, message: str, status: int | None = None) -> Response[bytes]:
    status = status if status is not None else STATUS.get(code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return json_response(ApiError(code=code, message=message), status, headers)


def on_refused(_: HttpRequest, exc: Refused) -> Response[bytes]:
    return error_response(exc.code, exc.message)


def on_http_error(_: HttpRequest, exc: HTTPException) -> Response[bytes]:
    code = _CODE_OF_STATUS.get(exc.status_code, ErrorCode.INTERNAL)
    message = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        problems = [
            f"{item.get('key', '')}: {item.get('message', '')}"
            for item in exc.extra
            if isinstance(item, dict)
        ]
        message = "; ".join(problems) or message
    return error_response(code, message, exc.status_code)


def on_unexpected(request: HttpRequest, exc: Exception) -> Response[bytes]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorCode.INTERNAL, "internal error", 500)


async def decode_body(request: HttpRequest, kind: type[B]) -> B:
    """The JSON body as ``kind``; raises ``Refused(BAD_FRAME)`` naming what is wrong."""
    raw = await request.body()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        if kind is CreateAccount and "$.username" in str(exc):
            raise Refused(ErrorCode.INVALID_USERNAME, "3 to 32 of a-z, 0-9, _ and .") from exc
        raise Refused(ErrorCode.BAD_FRAME, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise Refused(ErrorCode.BAD_FRAME, f"not JSON: {exc}") from exc


def conversation_view(record: ConversationRecord) -> Conversation:
    return Conversation(
        id=record.id,
        kind=record.kind,
        title=record.title,
        members=[Member(m.account_id, m.username, m.role) for m in record.members],
        last_seq=record.last_seq,
        created_at=record.created_at,
    )


def routes(services: Services) -> list[HTTPRouteHandler]:
    """The REST handlers, bound to ``services``."""
    engine, auth, store, config = services.engine, services.auth, services.store, services.config
    keys, provisioning = services.keys, services.provisioning

    async def device_of(request: HttpRequest) -> Device:
        device = await auth.device(request.headers.get("authorization"))
        if device is None:
            raise Refused(ErrorCode.UNAUTHORIZED, "missing or invalid device token")
        return device

    @get("/v1/health")
    async def health() -> Response[bytes]:
        return json_response(Health(ok=True, version=tidings.__version__))

    @post("/v1/accounts")
    async def create_account(request: HttpRequest) -> Response[bytes]:
        body = await decode_body(request, CreateAccount)
        if not config.registration_open:
            raise Refused(ErrorCode.REGISTRATION_CLOSED, "registration is closed")
        client = request.client.host if request.client is not None else "unknown"
        if not services.account_limiter.allow(client):
            raise Refused(ErrorCode.RATE_LIMITED, "too many accounts created from this address")
        token = new_token()
        account_id = new_id("a")
        await store.create_account(
            account_id=account_id,
            username=body.username,
            device_name=body.device_name,
            token_key=token.key,
            token_hash=token.secret_hash,
            now=engine.clock(),
        )
        log.info("account %s created", account_id)
        created = AccountCreated(
            account_id=account_id, username=body.username, device_id=1, token=token.token
        )
        return json_response(created, HTTP_201_CREATED)

    @get("/v1/me")
    async def me(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        return json_response(
            Me(
                account_id=device.account_id,
                username=device.username,
                device_id=device.device_id,
                device_name=device.device_name,
            )
        )

    @get("/v1/users/{username:str}")
    async def user(request: HttpRequest, username: FromPath[str]) -> Response[bytes]:
        await device_of(request)
        found = (await store.accounts_by_username([username])).get(username)
        if found is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such user")
        return json_response(User(account_id=found.account_id, username=found.username))

    @get("/v1/conversations")
    async def conversations(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        records = await engine.conversations(device)
        return json_response([conversation_view(r) for r in records])

    @post("/v1/conversations/direct")
    async def create_direct(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, CreateDirect)
        record, created = await engine.create_direct(device, body.username)
        return json_response(conversation_view(record), HTTP_201_CREATED if created else 200)

    @get("/v1/conversations/{conv:str}")
    async def conversation(request: HttpRequest, conv: FromPath[str]) -> Response[bytes]:
        device = await device_of(request)
        return json_response(conversation_view(await engine.conversation_for(device, conv)))

    @get("/v1/conversations/{conv:str}/messages")
    async def messages(
        request: HttpRequest,
        conv: FromPath[str],
        after: FromQuery[int] = 0,
        limit: FromQuery[int] = 100,
    ) -> Response[bytes]:
        device = await device_of(request)
        if after < 0 or not 1 <= limit <= MAX_BATCH:
            raise Refused(ErrorCode.BAD_FRAME, f"need after >= 0 and 1 <= limit <= {MAX_BATCH}")
        batch = await engine.fetch(device, conv, after, limit)
        return json_response(MessagePage(conv=conv, envelopes=batch.envelopes, head=batch.head))

    @get("/v1/conversations/{conv:str}/receipts")
    async def receipts(request: HttpRequest, conv: FromPath[str]) -> Response[bytes]:
        device = await device_of(request)
        return json_response(await engine.receipts(device, conv))

    @post("/v1/groups")
    async def create_group(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, CreateGroup)
        record = await engine.create_group(device, body.title, body.members)
        return json_response(conversation_view(record), HTTP_201_CREATED)

    @post("/v1/groups/{conv:str}/members", status_code=HTTP_200_OK)
    async def add_members(request: HttpRequest, conv: FromPath[str]) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, AddMembers)
        record = await engine.add_members(device, conv, body.usernames)
        return json_response(conversation_view(record))

    @delete("/v1/groups/{conv:str}/members/{username:str}", status_code=HTTP_200_OK)
    async def remove_member(
        request: HttpRequest, conv: FromPath[str], username: FromPath[str]
    ) -> Response[bytes]:
        device = await device_of(request)
        record = await engine.remove_member(device, conv, username)
        return json_response(conversation_view(record))

    @post("/v1/groups/{conv:str}/leave", status_code=HTTP_204_NO_CONTENT)
    async def leave(request: HttpRequest, conv: FromPath[str]) -> None:
        device = await device_of(request)
        await engine.leave(device, conv)

    @put("/v1/keys", request_max_body_size=MAX_KEY_UPLOAD_BYTES)
    async def upload_keys(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, KeyUpload)
        return json_response(await keys.upload(device, body))

    @delete("/v1/devices/{device_id:int}", status_code=HTTP_204_NO_CONTENT)
    async def remove_device(request: HttpRequest, device_id: FromPath[int]) -> None:
        device = await device_of(request)
        await keys.remove_device(device, device_id)

    @get("/v1/keys/counts")
    async def key_counts(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        return json_response(await keys.counts(device))

    @get("/v1/keys/{account_id:str}")
    async def bundles(
        request: HttpRequest, account_id: FromPath[str], device: FromQuery[int | None] = None
    ) -> Response[bytes]:
        me = await device_of(request)
        if device is not None and not 1 <= device <= 2**31 - 1:
            raise Refused(ErrorCode.BAD_FRAME, "device must be a device id")
        return json_response(await keys.bundles(me, account_id, device))

    @post("/v1/keys/claim", status_code=HTTP_200_OK)
    async def claim_keys(request: HttpRequest) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, ClaimKeys)
        return json_response(await keys.claim(device, body.devices))

    @get("/v1/conversations/{conv:str}/devices")
    async def devices(request: HttpRequest, conv: FromPath[str]) -> Response[bytes]:
        device = await device_of(request)
        return json_response(DeviceMap(devices=await engine.device_map(device, conv)))

    @post("/v1/provisioning")
    async def new_provisioning(request: HttpRequest) -> Response[bytes]:
        body = await decode_body(request, NewProvisioning)
        client = request.client.host if request.client is not None else "unknown"
        created = await provisioning.create(client, body.ephemeral_key)
        return json_response(created, HTTP_201_CREATED)

    @get("/v1/provisioning/{provisioning_id:str}")
    async def fetch_provisioning(
        request: HttpRequest, provisioning_id: FromPath[str]
    ) -> Response[bytes]:
        result = await provisioning.fetch(provisioning_id, request.headers.get("authorization"))
        return json_response(result)

    @post("/v1/provisioning/{provisioning_id:str}/approve", status_code=HTTP_200_OK)
    async def approve_provisioning(
        request: HttpRequest, provisioning_id: FromPath[str]
    ) -> Response[bytes]:
        device = await device_of(request)
        body = await decode_body(request, ApproveDevice)
        return json_response(await provisioning.approve(device, provisioning_id, body))

    return [
        health,
        create_account,
        me,
        user,
        conversations,
        create_direct,
        conversation,
        messages,
        receipts,
        create_group,
        add_members,
        remove_member,
        leave,
        upload_keys,
        remove_device,
        key_counts,
        bundles,
        claim_keys,
        devices,
        new_provisioning,
        fetch_provisioning,
        approve_provisioning,
    ]
