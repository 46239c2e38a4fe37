"""Push notifications: this device's registration (only ever the caller's own device), the
server's VAPID key, and the account's notification level per conversation."""

from __future__ import annotations

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.protocol import ErrorCode, routes
from tidings.protocol.push import (
    Notifications,
    PushRegistration,
    PushStatus,
    UpdateNotifications,
    VapidKey,
)
from tidings.protocol.rest import Conversation
from tidings.server.delivery import DeliveryService, Device
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.push.endpoints import check_endpoint
from tidings.server.push.provider import Platform
from tidings.server.push.service import PushService
from tidings.server.push.store import DEFAULT_SETTING, NotifySetting, StoredRegistration
from tidings.server.store import Refused

#: APNs device tokens are hex
_HEX = frozenset("0123456789abcdefABCDEF")


def _status(stored: StoredRegistration | None) -> PushStatus:
    if stored is None:
        return PushStatus()
    registration = PushRegistration(
        platform=stored.platform,
        token=stored.token,
        p256dh=stored.p256dh,
        auth=stored.auth,
        topic=stored.topic,
    )
    return PushStatus(registration=registration, updated_at=stored.updated_at)


@endpoint(routes.PUSH_REGISTRATION)
async def push_registration(caller: Injected[Device], push: Injected[PushService]) -> bytes:
    return to_json(_status(await push.store.push_registration(*caller.address)))


async def _check(body: PushRegistration, push: PushService) -> None:
    if Platform(body.platform) not in push.platforms:
        raise Refused(ErrorCode.BAD_FRAME, f"this server does not push with {body.platform}")
    if body.platform == "apns" and not set(body.token) <= _HEX:
        raise Refused(ErrorCode.BAD_FRAME, "an APNs device token is hexadecimal")
    if body.platform == "webpush":
        if not (body.p256dh and body.auth):
            raise Refused(ErrorCode.BAD_FRAME, "a WebPush registration needs p256dh and auth")
        problem = await check_endpoint(
            body.token,
            allow_http=push.allow_http_endpoints,
            allow_private=push.allow_private_endpoints,
        )
        if problem is not None:
            raise Refused(ErrorCode.BAD_FRAME, problem)


@endpoint(routes.SET_PUSH)
async def set_push(
    request: HttpRequest,
    caller: Injected[Device],
    push: Injected[PushService],
    delivery: Injected[DeliveryService],
) -> bytes:
    body = await decode_body(request, PushRegistration)
    await _check(body, push)
    stored = StoredRegistration(
        account_id=caller.account_id,
        device_id=caller.device_id,
        platform=body.platform,
        token=body.token,
        p256dh=body.p256dh,
        auth=body.auth,
        topic=body.topic,
        updated_at=delivery.clock(),
    )
    await push.store.set_push_registration(stored)
    return to_json(_status(stored))


@endpoint(routes.CLEAR_PUSH)
async def clear_push(caller: Injected[Device], push: Injected[PushService]) -> None:
    await push.store.clear_push_registration(*caller.address)


@endpoint(routes.VAPID_KEY)
async def vapid_key(push: Injected[PushService]) -> bytes:
    return to_json(VapidKey(public_key=push.vapid_public_key))


@endpoint(routes.NOTIFICATIONS)
async def notifications(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    push: Injected[PushService],
    conv: FromPath[str],
) -> bytes:
    await delivery.conversation_for(caller, conv)
    setting = await push.store.notify_setting(caller.account_id, conv)
    return to_json(Notifications(conv=conv, level=setting.level, muted_until=setting.muted_until))


@endpoint(routes.SET_NOTIFICATIONS)
async def set_notifications(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    push: Injected[PushService],
    conv: FromPath[str],
) -> bytes:
    body = await decode_body(request, UpdateNotifications)
    await delivery.conversation_for(caller, conv)
    setting = NotifySetting(body.level, body.muted_until)
    await push.store.set_notify_setting(caller.account_id, conv, setting)
    return to_json(Notifications(conv=conv, level=setting.level, muted_until=setting.muted_until))


HANDLERS: list[HTTPRouteHandler] = [
    push_registration,
    set_push,
    clear_push,
    vapid_key,
    notifications,
    set_notifications,
]


async def personal(view: Conversation, caller: Device, push: PushService | None) -> Conversation:
    """``view`` with the caller's notification setting and push hint."""
    if push is None:
        return view
    setting = await push.store.notify_setting(caller.account_id, view.id)
    return personalised(view, caller, push, setting)


def personalised(
    view: Conversation, caller: Device, push: PushService, setting: NotifySetting | None
) -> Conversation:
    setting = setting or DEFAULT_SETTING
    return msgspec.structs.replace(
        view,
        notify_level=setting.level,
        muted_until=setting.muted_until,
        push_hint=push.hint(caller.account_id, view.id),
    )
