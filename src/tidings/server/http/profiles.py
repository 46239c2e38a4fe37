"""Profiles (encrypted blobs), blocking and the account's device list
(tidings.protocol.social; the rules: tidings.server.social)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.protocol import ErrorCode, routes
from tidings.protocol.social import ProfileUpload
from tidings.server.delivery import DeliveryService, Device, now_ms
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.social import SocialService
from tidings.server.store import Refused


def _social(delivery: DeliveryService) -> SocialService:
    if delivery.social is None:
        raise Refused(ErrorCode.NOT_FOUND, "this server keeps no profiles")
    return delivery.social


def _account(account_id: str) -> str:
    if not 1 <= len(account_id) <= 64:
        raise Refused(ErrorCode.BAD_FRAME, "an account id is 1 to 64 characters")
    return account_id


@endpoint(routes.SET_PROFILE)
async def set_profile(
    request: HttpRequest, caller: Injected[Device], delivery: Injected[DeliveryService]
) -> bytes:
    social = _social(delivery)
    body = await decode_body(request, ProfileUpload)
    stored = await social.store.put_profile(caller.account_id, body.version, body.blob, now_ms())
    return to_json(stored)


@endpoint(routes.PROFILE)
async def profile(
    caller: Injected[Device], delivery: Injected[DeliveryService], account_id: FromPath[str]
) -> bytes:
    found = await _social(delivery).store.profile(_account(account_id))
    if found is None:
        raise Refused(ErrorCode.NOT_FOUND, "no profile")
    return to_json(found)


@endpoint(routes.DEVICES)
async def devices(caller: Injected[Device], delivery: Injected[DeliveryService]) -> bytes:
    return to_json(await _social(delivery).store.device_list(caller.account_id))


@endpoint(routes.BLOCKED)
async def blocked(caller: Injected[Device], delivery: Injected[DeliveryService]) -> bytes:
    return to_json(await _social(delivery).store.blocked_accounts(caller.account_id))


@endpoint(routes.BLOCK)
async def block(
    caller: Injected[Device], delivery: Injected[DeliveryService], account_id: FromPath[str]
) -> None:
    if _account(account_id) == caller.account_id:
        raise Refused(ErrorCode.FORBIDDEN, "an account cannot block itself")
    await _social(delivery).store.block(caller.account_id, account_id, now_ms())


@endpoint(routes.UNBLOCK)
async def unblock(
    caller: Injected[Device], delivery: Injected[DeliveryService], account_id: FromPath[str]
) -> None:
    await _social(delivery).store.unblock(caller.account_id, _account(account_id))


HANDLERS: list[HTTPRouteHandler] = [set_profile, profile, devices, blocked, block, unblock]
