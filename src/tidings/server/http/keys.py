"""The key directory: upload and count this device's keys, fetch and claim others' prekey
bundles, remove a device of the account."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery

from tidings.protocol import ErrorCode, routes
from tidings.protocol.keys import ClaimKeys, KeyUpload
from tidings.server.delivery import Device
from tidings.server.directory import KeyDirectory
from tidings.server.http.common import (
    HttpRequest,
    Injected,
    decode_body,
    endpoint,
    to_json,
)
from tidings.server.store import Refused

#: Largest device id (the store's and the protocol's DeviceId).
MAX_DEVICE_ID = 2**31 - 1

#: Largest PUT /v1/keys body: 200 Kyber prekeys in base64 JSON are about 450 kB.
MAX_KEY_UPLOAD_BYTES = 1024 * 1024


@endpoint(routes.UPLOAD_KEYS, request_max_body_size=MAX_KEY_UPLOAD_BYTES)
async def upload_keys(
    request: HttpRequest, caller: Injected[Device], keys: Injected[KeyDirectory]
) -> bytes:
    body = await decode_body(request, KeyUpload)
    return to_json(await keys.upload(caller, body))


@endpoint(routes.KEY_COUNTS)
async def key_counts(caller: Injected[Device], keys: Injected[KeyDirectory]) -> bytes:
    return to_json(await keys.counts(caller))


@endpoint(routes.BUNDLES)
async def bundles(
    caller: Injected[Device],
    keys: Injected[KeyDirectory],
    account_id: FromPath[str],
    device: FromQuery[int | None] = None,
) -> bytes:
    if device is not None:
        check_device_id(device)
    return to_json(await keys.bundles(caller, account_id, device))


@endpoint(routes.CLAIM_KEYS)
async def claim_keys(
    request: HttpRequest, caller: Injected[Device], keys: Injected[KeyDirectory]
) -> bytes:
    body = await decode_body(request, ClaimKeys)
    return to_json(await keys.claim(caller, body.devices))


@endpoint(routes.REMOVE_DEVICE)
async def remove_device(
    caller: Injected[Device], keys: Injected[KeyDirectory], device_id: FromPath[int]
) -> None:
    check_device_id(device_id)
    await keys.remove_device(caller, device_id)


def check_device_id(device_id: int) -> None:
    """Refuse (400) a number no device has: device ids are 1 to 2^31-1."""
    if not 1 <= device_id <= MAX_DEVICE_ID:
        raise Refused(ErrorCode.BAD_FRAME, f"a device id is 1 to {MAX_DEVICE_ID}")


HANDLERS: list[HTTPRouteHandler] = [upload_keys, key_counts, bundles, claim_keys, remove_device]
