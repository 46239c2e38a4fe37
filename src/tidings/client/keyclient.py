"""The key directory and provisioning routes of the server, over HTTP (tidings.protocol.keys).

:class:`HttpKeyDirectory` is what :class:`~tidings.client.e2ee.EndToEnd` claims bundles with;
it also uploads the device's keys. :func:`request_link` / :func:`poll_link` /
:func:`approve_link` are the three steps of linking a device. Failures raise the client's
errors: :class:`NotConnected` (unreachable), :class:`ServerRefused` (4xx), ``ClientError`` (5xx).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeVar

import httpx
import msgspec

from tidings.protocol import keys as wire
from tidings.protocol import rest

from .errors import ClientError, NotConnected, ServerRefused

_T = TypeVar("_T")

#: seconds between two polls of a pending provisioning request
POLL_INTERVAL = 0.5


class HttpKeyDirectory:
    """Key directory calls of one device (``http`` carries its token)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def claim(self, devices: Mapping[str, list[int]]) -> list[wire.PreKeyBundles]:
        body = wire.ClaimKeys(devices={a: list(d) for a, d in devices.items()})
        return await _call(self.http, "POST", "/v1/keys/claim", list[wire.PreKeyBundles], body)

    async def conversation_devices(self, conv: str) -> dict[str, list[int]]:
        path = f"/v1/conversations/{conv}/devices"
        found = await _call(self.http, "GET", path, wire.DeviceMap)
        return found.devices

    async def upload(self, body: wire.KeyUpload) -> wire.KeyCounts:
        return await _call(self.http, "PUT", "/v1/keys", wire.KeyCounts, body)

    async def counts(self) -> wire.KeyCounts:
        return await _call(self.http, "GET", "/v1/keys/counts", wire.KeyCounts)


async def request_link(http: httpx.AsyncClient, ephemeral_key: bytes) -> wire.Provisioning:
    """Step 1 (new device, no token): a provisioning request for ``ephemeral_key``."""
    body = wire.NewProvisioning(ephemeral_key=ephemeral_key)
    return await _call(http, "POST", "/v1/provisioning", wire.Provisioning, body)


async def approve_link(
    http: httpx.AsyncClient, provisioning_id: str, body: wire.ApproveDevice
) -> wire.ApprovedDevice:
    """Step 2 (an existing device, with its token)."""
    path = f"/v1/provisioning/{provisioning_id}/approve"
    return await _call(http, "POST", path, wire.ApprovedDevice, body)


async def poll_link(
    http: httpx.AsyncClient, provisioning: wire.Provisioning, patience: float | None
) -> wire.ProvisionedDevice:
    """Step 3 (new device): wait until the request was approved; the result comes once."""
    headers = {"Authorization": f"Bearer {provisioning.secret}"}
    path = f"/v1/provisioning/{provisioning.id}"
    async with asyncio.timeout(patience):
        while True:
            try:
                response = await http.get(path, headers=headers)
            except httpx.HTTPError as exc:
                raise NotConnected(f"cannot reach the server: {type(exc).__name__}") from exc
            if response.status_code != 202:
                return _decode(response, wire.ProvisionedDevice)
            await asyncio.sleep(POLL_INTERVAL)


async def _call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    answer: type[_T],
    body: msgspec.Struct | None = None,
) -> _T:
    content = None if body is None else msgspec.json.encode(body)
    headers = {} if body is None else {"Content-Type": "application/json"}
    try:
        response = await http.request(method, path, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise NotConnected(f"cannot reach the server: {type(exc).__name__}") from exc
    return _decode(response, answer)


def _decode(response: httpx.Response, answer: type[_T]) -> _T:
    if response.status_code >= 400:
        try:
            error = msgspec.json.decode(response.content, type=rest.ApiError)
            code, message = error.code, error.message
        except (msgspec.DecodeError, msgspec.ValidationError):
            code, message = f"http_{response.status_code}", ""
        if response.status_code >= 500:
            raise ClientError(code, message)
        raise ServerRefused(code, message, response.status_code)
    try:
        return msgspec.json.decode(response.content, type=answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ClientError("bad_answer", f"unexpected answer from the server: {exc}") from exc
