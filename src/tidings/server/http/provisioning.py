"""Linking a new device: it opens a provisioning request, an existing device of the account
approves it, and the new device fetches its token with the provisioning secret."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.protocol import routes
from tidings.protocol.keys import ApproveDevice, NewProvisioning
from tidings.server.delivery import Device
from tidings.server.directory import Provisioner
from tidings.server.http.common import (
    HttpRequest,
    Injected,
    client_address,
    decode_body,
    endpoint,
    to_json,
)


@endpoint(routes.NEW_PROVISIONING)
async def new_provisioning(request: HttpRequest, provisioning: Injected[Provisioner]) -> bytes:
    body = await decode_body(request, NewProvisioning)
    created = await provisioning.create(
        client_address(request), body.ephemeral_key, body.secret, body.token
    )
    return to_json(created)


@endpoint(routes.FETCH_PROVISIONING)
async def fetch_provisioning(
    request: HttpRequest, provisioning: Injected[Provisioner], provisioning_id: FromPath[str]
) -> bytes:
    # Authorization carries the provisioning secret here, not a device token.
    secret = request.headers.get("authorization")
    return to_json(await provisioning.fetch(provisioning_id, secret))


@endpoint(routes.APPROVE_PROVISIONING)
async def approve_provisioning(
    request: HttpRequest,
    caller: Injected[Device],
    provisioning: Injected[Provisioner],
    provisioning_id: FromPath[str],
) -> bytes:
    body = await decode_body(request, ApproveDevice)
    return to_json(await provisioning.approve(caller, provisioning_id, body))


HANDLERS: list[HTTPRouteHandler] = [new_provisioning, fetch_provisioning, approve_provisioning]
