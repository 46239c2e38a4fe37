"""Conversations of the calling account: list, open a direct one, details, message history,
receipts and the devices of the members."""

from __future__ import annotations

from litestar import Response
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_200_OK

from tidings.protocol import MAX_BATCH, ErrorCode, routes
from tidings.protocol.frames import MAX_INT64
from tidings.protocol.keys import DeviceMap
from tidings.protocol.rest import Conversation, CreateDirect, Member, MessagePage
from tidings.server.delivery import DeliveryService, Device
from tidings.server.http.common import JSON, HttpRequest, Injected, decode_body, endpoint, to_json
from tidings.server.http.push import personal, personalised
from tidings.server.push.service import PushService
from tidings.server.store import ConversationRecord, Refused


def conversation_view(record: ConversationRecord) -> Conversation:
    return Conversation(
        id=record.id,
        kind=record.kind,
        title=record.title,
        members=[Member(m.account_id, m.username, m.role) for m in record.members],
        last_seq=record.last_seq,
        created_at=record.created_at,
    )


@endpoint(routes.CONVERSATIONS)
async def conversations(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    push: Injected[PushService | None],
) -> bytes:
    records = await delivery.conversations(caller)
    views = [conversation_view(r) for r in records]
    if push is not None:
        mine = await push.store.notify_settings_of(caller.account_id)
        views = [personalised(v, caller, push, mine.get(v.id)) for v in views]
    return to_json(views)


@endpoint(routes.CREATE_DIRECT)
async def create_direct(
    request: HttpRequest,
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    push: Injected[PushService | None],
) -> Response[bytes]:
    body = await decode_body(request, CreateDirect)
    record, created = await delivery.create_direct(caller, body.username)
    # An existing conversation is answered 200 rather than the route's 201.
    status = routes.CREATE_DIRECT.status if created else HTTP_200_OK
    view = await personal(conversation_view(record), caller, push)
    return Response(to_json(view), status_code=status, media_type=JSON)


@endpoint(routes.CONVERSATION)
async def conversation(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    conv: FromPath[str],
    push: Injected[PushService | None],
) -> bytes:
    view = conversation_view(await delivery.conversation_for(caller, conv))
    return to_json(await personal(view, caller, push))


@endpoint(routes.MESSAGES)
async def messages(
    caller: Injected[Device],
    delivery: Injected[DeliveryService],
    conv: FromPath[str],
    after: FromQuery[int] = 0,
    limit: FromQuery[int] = 100,
) -> bytes:
    if not 0 <= after <= MAX_INT64 or not 1 <= limit <= MAX_BATCH:
        raise Refused(
            ErrorCode.BAD_FRAME, f"need 0 <= after <= {MAX_INT64} and 1 <= limit <= {MAX_BATCH}"
        )
    batch = await delivery.fetch(caller, conv, after, limit)
    return to_json(MessagePage(conv=conv, envelopes=batch.envelopes, head=batch.head))


@endpoint(routes.RECEIPTS)
async def receipts(
    caller: Injected[Device], delivery: Injected[DeliveryService], conv: FromPath[str]
) -> bytes:
    return to_json(await delivery.receipts(caller, conv))


@endpoint(routes.CONVERSATION_DEVICES)
async def conversation_devices(
    caller: Injected[Device], delivery: Injected[DeliveryService], conv: FromPath[str]
) -> bytes:
    return to_json(DeviceMap(devices=await delivery.device_map(caller, conv)))


HANDLERS: list[HTTPRouteHandler] = [
    conversations,
    create_direct,
    conversation,
    messages,
    receipts,
    conversation_devices,
]
