"""Groups: create one, add and remove members (admins), leave."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.protocol import routes
from tidings.protocol.rest import AddMembers, CreateGroup
from tidings.server.delivery import DeliveryService, Device
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.http.conversations import conversation_view


@endpoint(routes.CREATE_GROUP)
async def create_group(
    request: HttpRequest, caller: Injected[Device], delivery: Injected[DeliveryService]
) -> bytes:
    body = await decode_body(request, CreateGroup)
    record = await delivery.create_group(caller, body.title, body.members)
    return to_json(conversation_view(record))


@endpoint(routes.ADD_MEMBERS)
async def add_members(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    conv: FromPath[str],
) -> bytes:
    body = await decode_body(request, AddMembers)
    record = await delivery.add_members(caller, conv, body.usernames)
    return to_json(conversation_view(record))


@endpoint(routes.REMOVE_MEMBER)
async def remove_member(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    conv: FromPath[str],
    username: FromPath[str],
) -> bytes:
    record = await delivery.remove_member(caller, conv, username)
    return to_json(conversation_view(record))


@endpoint(routes.LEAVE_GROUP)
async def leave(
    caller: Injected[Device], delivery: Injected[DeliveryService], conv: FromPath[str]
) -> None:
    await delivery.leave(caller, conv)


HANDLERS: list[HTTPRouteHandler] = [create_group, add_members, remove_member, leave]
