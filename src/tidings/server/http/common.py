"""What every REST controller shares: the services they are given, how a route of
:mod:`tidings.protocol.routes` becomes a handler, the ``caller`` dependency that authenticates
``Authorization: Bearer <device token>``, JSON bodies, and the mapping of every failure to an
:class:`~tidings.protocol.rest.ApiError` body.

Bodies are decoded and encoded with msgspec here rather than by the framework, so a bad body
gets our error shape and the JSON on the wire is exactly what ``msgspec.json`` makes of the
protocol structs on the client side.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import SkipValidation
from litestar.types import ExceptionHandlersMap

from tidings.protocol import ErrorCode
from tidings.protocol.rest import ApiError, CreateAccount
from tidings.protocol.routes import Route
from tidings.server.admin.service import AdminService
from tidings.server.auth import Authenticator
from tidings.server.config import ServerConfig
from tidings.server.delivery import DeliveryService, Device
from tidings.server.directory import KeyDirectory, Provisioner
from tidings.server.media.service import MediaService
from tidings.server.push.service import PushService
from tidings.server.ratelimit import RateLimiter, client_key
from tidings.server.store import Refused, Store
from tidings.server.vault.service import VaultService

log = logging.getLogger(__name__)

B = TypeVar("B", bound=msgspec.Struct)
T = TypeVar("T")
#: A handler parameter filled by the dependency of the same name (see :func:`dependencies`),
#: handed over as it is (the framework does not try to validate a service or a Device).
Injected: TypeAlias = NamedDependency[SkipValidation[T]]
#: No authentication middleware sets user or auth: the ``caller`` dependency authenticates.
HttpRequest = Request[object, object, State]

JSON = "application/json"


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    """What the handlers work with; each field is a dependency of the same name."""

    config: ServerConfig
    store: Store
    delivery: DeliveryService
    auth: Authenticator
    keys: KeyDirectory
    provisioning: Provisioner
    #: POST /v1/accounts per client IP address
    account_limiter: RateLimiter
    #: attachment blobs (None: this server keeps none; the /v1/media routes answer 404)
    media: MediaService | None = None
    #: push registrations, notification levels and wake-ups (None: no push)
    push: PushService | None = None
    #: the history vault (None: no vault routes work)
    vault: VaultService | None = None
    #: the operator's users, devices and invites (None: sign-up takes no invite)
    admin: AdminService | None = None


def dependencies(services: Services) -> dict[str, Provide]:
    """The dependencies of the REST handlers: every service by its field name, and ``caller``
    (the authenticated device; not ``device``, which is a query parameter of ``bundles``)."""

    def constant(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    provided = {
        field.name: constant(getattr(services, field.name))
        for field in dataclasses.fields(services)
    }
    provided["caller"] = Provide(authenticated_device)
    return provided


async def authenticated_device(request: HttpRequest, auth: Injected[Authenticator]) -> Device:
    """The device whose token the request carries; ``Refused(UNAUTHORIZED)`` without one."""
    device = await auth.device(request.headers.get("authorization"))
    if device is None:
        raise Refused(ErrorCode.UNAUTHORIZED, "missing or invalid device token")
    return device


def endpoint(route: Route, **options: Any) -> Callable[[Callable[..., Any]], HTTPRouteHandler]:
    """Declare the handler of ``route``: its path, method, status and name come from the table.
    A handler answers JSON ``bytes`` (see :func:`to_json`), or nothing for a 204. The handler of
    a route with ``auth="device"`` takes ``caller`` even if it does not use it: asking for it is
    what authenticates the request (tests/unit/server/test_routes.py checks every route)."""

    def declare(fn: Callable[..., Any]) -> HTTPRouteHandler:
        handler = HTTPRouteHandler(
            path=route.path,
            http_method=route.method,
            status_code=route.status,
            name=route.name,
            media_type=JSON,
            **options,
        )
        return handler(fn)

    return declare


def to_json(body: object) -> bytes:
    """A response body as ``msgspec.json`` encodes it."""
    return msgspec.json.encode(body)


def client_address(request: HttpRequest) -> str:
    """What per-IP limits count on: the client's IPv4 address, or the /64 of its IPv6 one
    (:func:`~tidings.server.ratelimit.client_key`). The client is the TCP peer unless a
    configured proxy named it (:mod:`tidings.server.forwarded`)."""
    return client_key(request.client.host) if request.client is not None else "unknown"


def require_json(request: HttpRequest) -> None:
    """Refuse (415) a body that does not say ``Content-Type: application/json``: a browser
    sends ``text/plain`` across origins without asking first, JSON it cannot."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        raise HTTPException(status_code=415, detail="Content-Type must be application/json")


async def decode_body(request: HttpRequest, kind: type[B]) -> B:
    """The JSON body as ``kind``; raises ``Refused(BAD_FRAME)`` naming what is wrong, or 415
    without ``Content-Type: application/json`` (after the ``caller`` dependency: a request
    without a device token gets 401 first)."""
    require_json(request)
    raw = await request.body()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        if kind is CreateAccount and "$.username" in str(exc):
            raise Refused(ErrorCode.INVALID_USERNAME, "3 to 32 of a-z, 0-9, _ and .") from exc
        raise Refused(ErrorCode.BAD_FRAME, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise Refused(ErrorCode.BAD_FRAME, f"not JSON: {exc}") from exc
    except RecursionError:
        # msgspec's answer to arrays or objects nested a thousand levels deep.
        raise Refused(ErrorCode.BAD_FRAME, "not JSON: nested too deeply") from None


# --------------------------------------------------------------------------- errors

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
    ErrorCode.QUOTA_EXCEEDED: 413,
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
    415: ErrorCode.BAD_FRAME,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.OVERLOADED,
}


def error_response(code: ErrorCode, message: str, status: int | None = None) -> Response[bytes]:
    status = status if status is not None else STATUS.get(code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = to_json(ApiError(code=code, message=message))
    return Response(body, status_code=status, media_type=JSON, headers=headers)


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


#: The application's exception handlers: every failure answers an ApiError body.
EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Refused: on_refused,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
