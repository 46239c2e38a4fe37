"""What a connection does with each client frame: the ``{frame type: handler}`` map that
:class:`~tidings.server.ws.connection.DeviceConnection` dispatches through.

Each entry names the phases (:mod:`tidings.server.ws.phase`) in which its frame is served; in
any other open phase the frame is answered ``bad_frame`` with the entry's refusal. Every type
of :data:`tidings.protocol.ClientFrame` has an entry (a test checks it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from tidings.protocol import Ack, DeviceSend, Fetch, Hello, Ping, Pong, Read, Send, Typing
from tidings.server.sendlimits import SendOrder
from tidings.server.store import Refused
from tidings.server.ws.phase import GREETED, OPEN, Phase

if TYPE_CHECKING:
    from tidings.server.ws.connection import DeviceConnection

F = TypeVar("F", bound=msgspec.Struct)

_BEFORE_HELLO = "the first frame must be hello"


@dataclasses.dataclass(frozen=True, slots=True)
class FrameHandler(Generic[F]):
    #: serves the frame; work that touches the store is started as a task of its own
    serve: Callable[[DeviceConnection, F], Awaitable[None]]
    #: phases in which the frame is served
    phases: frozenset[Phase]
    #: the ``bad_frame`` message for the frame in any other open phase
    refusal: str = _BEFORE_HELLO


def frame_tag(frame: msgspec.Struct) -> str:
    tag = type(frame).__struct_config__.tag
    return tag if isinstance(tag, str) else type(frame).__name__


# Each handler says whether its frame is progress (see DeviceConnection.progress): only then
# does the connection's idle deadline move.


async def on_ping(connection: DeviceConnection, frame: Ping) -> None:
    connection.pinged()
    connection.reply(Pong(n=frame.n))


async def on_hello(connection: DeviceConnection, frame: Hello) -> None:
    connection.progress()
    await connection.hello(frame)


async def on_send(connection: DeviceConnection, frame: Send) -> None:
    connection.progress()
    await connection.start(_send(connection, frame))


async def on_device_send(connection: DeviceConnection, frame: DeviceSend) -> None:
    connection.progress()
    await connection.start(_device_send(connection, frame))


async def on_ack(connection: DeviceConnection, frame: Ack) -> None:
    connection.acked(frame.upto, frame.device_upto)
    await connection.start(connection.service.ack(connection.device, frame.upto, frame.device_upto))


async def on_read(connection: DeviceConnection, frame: Read) -> None:
    connection.progress()
    await connection.start(_read(connection, frame))


async def on_fetch(connection: DeviceConnection, frame: Fetch) -> None:
    connection.progress()
    await connection.start(_fetch(connection, frame))


async def on_typing(connection: DeviceConnection, frame: Typing) -> None:
    # Not progress: typing alone does not keep an idle connection open.
    social = connection.service.social
    if social is not None:
        await connection.start(_typing(connection, frame))


async def _typing(connection: DeviceConnection, frame: Typing) -> None:
    social, device = connection.service.social, connection.device
    assert social is not None  # checked by on_typing
    code = await social.typing(device.account_id, device.device_id, frame)
    if code is not None:
        connection.error(code, f"cannot type in {frame.conv}", "typing")


async def _send(connection: DeviceConnection, frame: Send) -> None:
    order = connection.send_order
    if order is None:
        order = connection.send_order = SendOrder()
    connection.reply(await connection.service.send(connection.device, frame, order))


async def _device_send(connection: DeviceConnection, frame: DeviceSend) -> None:
    connection.reply(await connection.service.device_send(connection.device, frame))


async def _read(connection: DeviceConnection, frame: Read) -> None:
    try:
        await connection.service.read(connection.device, frame.conv, frame.seq)
    except Refused as refused:
        connection.error(refused.code, refused.message, frame.conv)


async def _fetch(connection: DeviceConnection, frame: Fetch) -> None:
    service, device = connection.service, connection.device
    try:
        batch = await service.fetch(device, frame.conv, frame.after, frame.limit)
    except Refused as refused:
        connection.error(refused.code, refused.message, frame.conv)
        return
    connection.reply(batch)


#: The handler of every client frame type.
HANDLERS: Mapping[type[msgspec.Struct], FrameHandler[Any]] = {
    Ping: FrameHandler(on_ping, OPEN),
    Hello: FrameHandler(
        on_hello, frozenset({Phase.AWAITING_HELLO}), refusal="hello already received"
    ),
    Send: FrameHandler(on_send, GREETED),
    DeviceSend: FrameHandler(on_device_send, GREETED),
    Ack: FrameHandler(on_ack, GREETED),
    Read: FrameHandler(on_read, GREETED),
    Fetch: FrameHandler(on_fetch, GREETED),
    Typing: FrameHandler(on_typing, GREETED),
}
