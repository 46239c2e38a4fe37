"""A burst of frames written by the client in one go (client/wswrite.py): the same bytes
websockets would frame, each masked with a key of its own, and read back by a real server."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from tidings.client.wswrite import binary_frames, masked_header, send_binaries

#: one size of every length class of RFC 6455 (7-bit, 16-bit, 64-bit) and their edges
SIZES = (0, 1, 125, 126, 65535, 65536, 70_000)


@pytest.mark.parametrize("size", SIZES)
def test_the_header_is_what_websockets_writes(size: int) -> None:
    data = os.urandom(size)
    serialized = Frame(Opcode.BINARY, data).serialize(mask=True, extensions=[])
    header = masked_header(size)
    assert serialized[: len(header)] == header
    assert len(serialized) == len(header) + 4 + size  # then the key, then the payload


def test_a_server_reads_each_frame_back() -> None:
    """Fed to websockets' own server side, the bytes are the messages again, in order; each
    frame has its own masking key."""
    messages = [os.urandom(size) for size in SIZES]
    keys = os.urandom(4 * len(messages))
    server = Protocol(Side.SERVER, state=State.OPEN)  # past the handshake: frames only
    server.receive_data(b"".join(binary_frames(messages, keys)))
    frames = server.events_received()
    assert [f.data for f in frames if isinstance(f, Frame)] == messages
    assert all(f.opcode is Opcode.BINARY and f.fin for f in frames if isinstance(f, Frame))
    assert server.state is State.OPEN  # nothing it had to refuse


async def test_a_burst_arrives_over_a_real_socket() -> None:
    received: list[bytes] = []
    done = asyncio.Event()
    messages = [b"message %d " % n * (n + 1) for n in range(300)]

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == len(messages):
                done.set()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as socket:
            await send_binaries(socket, messages[:1])
            await send_binaries(socket, messages[1:])
            await asyncio.wait_for(done.wait(), 30)
    assert received == messages


async def test_websockets_frames_them_where_an_extension_is_on() -> None:
    """With permessage-deflate negotiated, websockets frames (and compresses) each message;
    they still arrive whole and in order."""
    received: list[bytes] = []
    done = asyncio.Event()
    messages = [b"compressible " * n for n in range(1, 50)]

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == len(messages):
                done.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as socket:
            assert socket.protocol.extensions
            await send_binaries(socket, messages)
            await asyncio.wait_for(done.wait(), 30)
    assert received == messages
