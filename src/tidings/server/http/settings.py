"""The calling account's settings: who may add it to a group (docs: protocol.rest.GroupAdds)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from tidings.protocol import routes
from tidings.protocol.rest import AccountSettings, UpdateSettings
from tidings.server.delivery import DeliveryService, Device
from tidings.server.http.common import HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.store import Store


async def _settings(caller: Device, store: Store, delivery: DeliveryService) -> AccountSettings:
    found = AccountSettings(group_adds=await store.group_adds(caller.account_id))
    if delivery.social is not None:  # read receipts and typing (tidings.server.social)
        found.read_receipts, found.typing_indicators = await delivery.social.store.privacy(
            caller.account_id
        )
    return found


@endpoint(routes.SETTINGS)
async def settings(
    caller: Injected[Device], store: Injected[Store], delivery: Injected[DeliveryService]
) -> bytes:
    return to_json(await _settings(caller, store, delivery))


@endpoint(routes.UPDATE_SETTINGS)
async def update_settings(
    request: HttpRequest,
    caller: Injected[Device],
    store: Injected[Store],
    delivery: Injected[DeliveryService],
) -> bytes:
    body = await decode_body(request, UpdateSettings)
    if body.group_adds is not None:
        await store.set_group_adds(caller.account_id, body.group_adds)
    wants_privacy = body.read_receipts is not None or body.typing_indicators is not None
    if wants_privacy and delivery.social is not None:
        await delivery.social.store.set_privacy(
            caller.account_id, body.read_receipts, body.typing_indicators
        )
    return to_json(await _settings(caller, store, delivery))


HANDLERS: list[HTTPRouteHandler] = [settings, update_settings]
