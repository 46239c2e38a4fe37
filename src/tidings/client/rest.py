"""The one REST caller of the client: every URL comes from :mod:`tidings.protocol.routes`.

:class:`Rest` sends one route's request and decodes its answer. Failures raise the client's
errors: :class:`~.errors.NotConnected` (unreachable), :class:`~.errors.DeviceRemoved` (401 on a
route that needs the device's token: the device was removed or its token is invalid; the
``on_unauthorized`` hook hears it first, so the engine stops reconnecting), a
:class:`~.errors.ServerRefused` subclass for the other 4xx (:data:`~.errors.REFUSALS`), and
``ClientError`` for 5xx or an answer that does not decode.

The three steps of linking a device (:func:`request_link`, :func:`poll_link`,
:func:`approve_link`) are here as well.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import msgspec

from tidings.protocol import keys as wire
from tidings.protocol import rest, routes

from . import tls
from .errors import (
    REFUSALS,
    ClientError,
    ConnectionLost,
    DeviceRemoved,
    ServerRefused,
    ServerTimeout,
)
from .network import diagnose

_T = TypeVar("_T")

#: seconds for one REST call
HTTP_TIMEOUT = 30.0
#: Seconds an idle pooled connection may be reused. Below the 5 s after which servers close an
#: idle keep-alive connection (uvicorn's default), so a request is never written onto a
#: connection the server is closing at that moment (it would fail with a reset).
KEEPALIVE_EXPIRY = 2.0
#: seconds between two polls of a pending provisioning request
POLL_INTERVAL = 0.5
#: tries of a call that is safe to repeat (sign-up, linking) when its answer was lost
RETRIES = 4
#: seconds before the first repeat (doubled for each further one)
RETRY_PAUSE = 0.5


async def retrying(
    call: Callable[[], Awaitable[_T]], attempts: int = RETRIES, pause: float = RETRY_PAUSE
) -> _T:
    """``call()``, repeated while its connection broke or timed out before the answer came
    (the request may have reached the server, so only calls that are safe to repeat use
    this). A server that cannot be reached at all (refused, DNS, wrong scheme) fails at
    once."""
    for attempt in range(attempts):
        try:
            return await call()
        except (ConnectionLost, ServerTimeout):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(pause * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class Rest:
    """REST calls to the server at ``server_url``, with the device's ``token`` if it has one."""

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        timeout: float = HTTP_TIMEOUT,
        on_unauthorized: Callable[[], None] | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
            # always an explicit context: certifi's CAs or the user's CA file (client/tls.py)
            verify=verify if verify is not None else tls.ssl_context(),
        )
        self.on_unauthorized = on_unauthorized

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        route: routes.Route,
        answer: type[_T],
        body: msgspec.Struct | None = None,
        /,
        **params: str | int,
    ) -> _T:
        """``route`` with its path ``params`` filled in; its answer decoded as ``answer``."""
        response = await self.request(route, body, **params)
        return _decode(response, answer)

    async def send(
        self, route: routes.Route, body: msgspec.Struct | None = None, /, **params: str | int
    ) -> None:
        """A route without an answer body (204)."""
        await self.request(route, body, **params)

    async def request(
        self,
        route: routes.Route,
        body: msgspec.Struct | None = None,
        headers: dict[str, str] | None = None,
        /,
        **params: str | int,
    ) -> httpx.Response:
        """The raw answer of a successful call (a 2xx); errors are raised (module docstring)."""
        content = None if body is None else msgspec.json.encode(body)
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            response = await self.http.request(
                route.method, route.url(**params), content=content, headers=sent
            )
        except httpx.HTTPError as exc:
            raise await diagnose(exc, str(self.http.base_url)) from exc
        if response.status_code == 401 and route.auth == "device":
            if self.on_unauthorized is not None:
                self.on_unauthorized()
            raise DeviceRemoved()
        _check(response)
        return response


async def request_link(
    http: Rest, ephemeral_key: bytes, secret: str | None = None, token: str | None = None
) -> wire.Provisioning:
    """Step 1 (new device, no token): a provisioning request for ``ephemeral_key``; with the
    ``secret`` and device ``token`` chosen by the new device, safe to repeat."""
    body = wire.NewProvisioning(ephemeral_key=ephemeral_key, secret=secret, token=token)
    return await http.call(routes.NEW_PROVISIONING, wire.Provisioning, body)


async def approve_link(
    http: Rest, provisioning_id: str, body: wire.ApproveDevice
) -> wire.ApprovedDevice:
    """Step 2 (an existing device, with its token)."""
    return await http.call(
        routes.APPROVE_PROVISIONING, wire.ApprovedDevice, body, provisioning_id=provisioning_id
    )


async def poll_link(
    http: Rest, provisioning: wire.Provisioning, patience: float | None
) -> wire.ProvisionedDevice:
    """Step 3 (new device): wait until the request was approved; the result comes once."""
    headers = {"Authorization": f"Bearer {provisioning.secret}"}
    async with asyncio.timeout(patience):
        while True:
            try:
                response = await http.request(
                    routes.FETCH_PROVISIONING, None, headers, provisioning_id=provisioning.id
                )
            except (ConnectionLost, ServerTimeout):
                await asyncio.sleep(POLL_INTERVAL)  # a lost answer: fetch it again
                continue
            if response.status_code != 202:
                return _decode(response, wire.ProvisionedDevice)
            await asyncio.sleep(POLL_INTERVAL)


def _check(response: httpx.Response) -> None:
    """Raise a ServerRefused (4xx) or ClientError (5xx) for an unsuccessful answer."""
    if response.status_code < 400:
        return
    try:
        error = msgspec.json.decode(response.content, type=rest.ApiError)
        code, message = error.code, error.message
    except (msgspec.DecodeError, msgspec.ValidationError):
        code, message = f"http_{response.status_code}", ""
    if response.status_code >= 500:
        raise ClientError(code, message)
    refusal = REFUSALS.get(response.status_code, ServerRefused)
    raise refusal(code, message, response.status_code)


def _decode(response: httpx.Response, answer: type[_T]) -> _T:
    """The body of an answer as ``answer``; ServerRefused/ClientError for an error."""
    _check(response)
    try:
        return msgspec.json.decode(response.content, type=answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ClientError("bad_answer", f"unexpected answer from the server: {exc}") from exc
