"""The lighter queue, flag and frame parser under uvicorn's WebSocket protocol."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from tidings.server.ws.uvicorn_protocol import _binary_header, _Flag, _FrameParser, _Inbox


async def test_inbox_is_first_in_first_out_and_wakes_a_waiting_getter():
    inbox = _Inbox()
    assert inbox.empty()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert await getter == "a"
    assert not inbox.empty()
    assert await inbox.get() == "b"
    assert inbox.empty()


async def test_inbox_getter_cancelled_after_its_wake_up_passes_it_on():
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")
    first.cancel()
    assert await second == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_flag_wait_returns_once_set():
    flag = _Flag()
    assert not flag.is_set()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    flag.set()
    assert await waiter is True
    flag.clear()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True


_HANDSHAKE = (
    b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Authorization: Bearer secret\r\n\r\n"
)


def _masked(payload: bytes) -> bytes:
    """A binary frame from a client (masked with a zero key: the payload shows as is)."""
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_frame_parser_lets_go_of_the_request_after_the_handshake():
    conn = _FrameParser()
    # a frame pipelined behind the request, and one split over two reads
    conn.receive_data(_HANDSHAKE + _masked(b"first"))
    request, *frames = conn.events_received()
    assert isinstance(request, Request)
    assert request.headers["Authorization"] == "Bearer secret"
    conn.send_response(conn.accept(request))
    assert conn.state is State.OPEN
    gone = weakref.ref(request)
    del request
    gc.collect()
    assert gone() is None
    second = _masked(b"second")
    conn.receive_data(second[:3])
    conn.receive_data(second[3:])
    frames += conn.events_received()
    assert [(f.opcode, f.data) for f in frames] == [
        (Opcode.BINARY, b"first"),
        (Opcode.BINARY, b"second"),
    ]


def test_frame_parser_still_refuses_a_bad_request():
    conn = _FrameParser()
    conn.receive_data(b"NOT HTTP\r\n\r\n")
    assert conn.events_received() == []
    assert conn.handshake_exc is not None


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_binary_frames_are_framed_as_websockets_frames_them(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert _binary_header(size) + payload == expected
