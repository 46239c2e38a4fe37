"""The calling account's settings: who may add it to a group (docs: protocol.rest.GroupAdds)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from tidings.protocol import routes
from tidings.protocol.rest import AccountSettings, UpdateSettings
from tidings.server.delivery import Device
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.store import Store


@endpoint(routes.SETTINGS)
async def settings(caller: Injected[Device], store: Injected[Store]) -> bytes:
    return to_json(AccountSettings(group_adds=await store.group_adds(caller.account_id)))


@endpoint(routes.UPDATE_SETTINGS)
async def update_settings(
    request: HttpRequest, caller: Injected[Device], store: Injected[Store]
) -> bytes:
    body = await decode_body(request, UpdateSettings)
    if body.group_adds is not None:
        await store.set_group_adds(caller.account_id, body.group_adds)
    return to_json(AccountSettings(group_adds=await store.group_adds(caller.account_id)))


HANDLERS: list[HTTPRouteHandler] = [settings, update_settings]
