"""Broadcast channels (tidings.protocol.channels; the rules: tidings.server.channels)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from tidings.protocol import ErrorCode, routes
from tidings.protocol.channels import (
    MAX_POST_PAGE,
    MAX_SUBSCRIBER_PAGE,
    CreateChannel,
    JoinChannel,
    NewPost,
    SetChannelNotify,
)
from tidings.protocol.frames import MAX_INT64
from tidings.server.channels.service import ChannelService
from tidings.server.delivery import DeliveryService, Device
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.store import Refused


def _channels(delivery: DeliveryService) -> ChannelService:
    if delivery.channels is None:
        raise Refused(ErrorCode.NOT_FOUND, "this server has no channels")
    return delivery.channels


def _id(value: str, what: str = "a channel id") -> str:
    if not 1 <= len(value) <= 64:
        raise Refused(ErrorCode.BAD_FRAME, f"{what} is 1 to 64 characters")
    return value


async def _account(delivery: DeliveryService, username: str) -> str:
    found = await delivery.store.accounts_by_username([username])
    if username not in found:
        raise Refused(ErrorCode.NOT_FOUND, f"no such user: {username}")
    return found[username].account_id


@endpoint(routes.CREATE_CHANNEL)
async def create_channel(
    request: HttpRequest, caller: Injected[Device], delivery: Injected[DeliveryService]
) -> bytes:
    body = await decode_body(request, CreateChannel)
    return to_json(await _channels(delivery).create(caller.account_id, body))


@endpoint(routes.MY_CHANNELS)
async def my_channels(caller: Injected[Device], delivery: Injected[DeliveryService]) -> bytes:
    return to_json(await _channels(delivery).mine(caller.account_id))


@endpoint(routes.CHANNEL)
async def channel(
    caller: Injected[Device], delivery: Injected[DeliveryService], channel: FromPath[str]
) -> bytes:
    return to_json(await _channels(delivery).info(caller.account_id, _id(channel)))


@endpoint(routes.CHANNEL_BY_HANDLE)
async def channel_by_handle(
    caller: Injected[Device], delivery: Injected[DeliveryService], handle: FromPath[str]
) -> bytes:
    found = await _channels(delivery).by_handle(caller.account_id, _id(handle, "a handle"))
    return to_json(found)


@endpoint(routes.SUBSCRIBE)
async def subscribe(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
) -> bytes:
    body = await decode_body(request, JoinChannel)
    joined = await _channels(delivery).subscribe(caller.account_id, _id(channel), body.invite)
    return to_json(joined)


@endpoint(routes.UNSUBSCRIBE)
async def unsubscribe(
    caller: Injected[Device], delivery: Injected[DeliveryService], channel: FromPath[str]
) -> None:
    await _channels(delivery).unsubscribe(caller.account_id, _id(channel))


@endpoint(routes.JOIN_BY_INVITE)
async def join_by_invite(
    caller: Injected[Device], delivery: Injected[DeliveryService], token: FromPath[str]
) -> bytes:
    joined = await _channels(delivery).join_by_invite(caller.account_id, _id(token, "a token"))
    return to_json(joined)


@endpoint(routes.CREATE_INVITE)
async def create_invite(
    caller: Injected[Device], delivery: Injected[DeliveryService], channel: FromPath[str]
) -> bytes:
    return to_json(await _channels(delivery).create_invite(caller.account_id, _id(channel)))


@endpoint(routes.REVOKE_INVITE)
async def revoke_invite(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
    token: FromPath[str],
) -> None:
    await _channels(delivery).revoke_invite(caller.account_id, _id(channel), _id(token, "a token"))


@endpoint(routes.ADD_CHANNEL_ADMIN)
async def add_channel_admin(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
    username: FromPath[str],
) -> bytes:
    target = await _account(delivery, username)
    return to_json(
        await _channels(delivery).set_admin(caller.account_id, _id(channel), target, True)
    )


@endpoint(routes.REMOVE_CHANNEL_ADMIN)
async def remove_channel_admin(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
    username: FromPath[str],
) -> bytes:
    target = await _account(delivery, username)
    changed = await _channels(delivery).set_admin(caller.account_id, _id(channel), target, False)
    return to_json(changed)


@endpoint(routes.CHANNEL_SUBSCRIBERS)
async def channel_subscribers(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
    start: FromQuery[str] = "",
    limit: FromQuery[int] = 1000,
) -> bytes:
    if not 1 <= limit <= MAX_SUBSCRIBER_PAGE:
        raise Refused(ErrorCode.BAD_FRAME, f"need 1 <= limit <= {MAX_SUBSCRIBER_PAGE}")
    page = await _channels(delivery).subscribers(caller.account_id, _id(channel), start, limit)
    return to_json(page)


@endpoint(routes.CHANNEL_NOTIFY)
async def channel_notify(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
) -> bytes:
    body = await decode_body(request, SetChannelNotify)
    changed = await _channels(delivery).set_notify(caller.account_id, _id(channel), body.level)
    return to_json(changed)


@endpoint(routes.POST_TO_CHANNEL)
async def post_to_channel(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
) -> bytes:
    body = await decode_body(request, NewPost)
    accepted = await _channels(delivery).post(
        caller.account_id, caller.device_id, _id(channel), body
    )
    return to_json(accepted)


@endpoint(routes.CHANNEL_POSTS)
async def channel_posts(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    channel: FromPath[str],
    after: FromQuery[int | None] = None,
    before: FromQuery[int | None] = None,
    limit: FromQuery[int] = 100,
) -> bytes:
    for value in (after, before):
        if value is not None and not 0 <= value <= MAX_INT64:
            raise Refused(ErrorCode.BAD_FRAME, f"need 0 <= after, before <= {MAX_INT64}")
    if not 1 <= limit <= MAX_POST_PAGE:
        raise Refused(ErrorCode.BAD_FRAME, f"need 1 <= limit <= {MAX_POST_PAGE}")
    page = await _channels(delivery).posts(caller.account_id, _id(channel), after, before, limit)
    return to_json(page)


HANDLERS: list[HTTPRouteHandler] = [
    create_channel,
    my_channels,
    channel,
    channel_by_handle,
    subscribe,
    unsubscribe,
    join_by_invite,
    create_invite,
    revoke_invite,
    add_channel_admin,
    remove_channel_admin,
    channel_subscribers,
    channel_notify,
    post_to_channel,
    channel_posts,
]
