"""One user must not be able to exhaust a real ``tidings serve``: a connection that never reads
is dropped once its outbox passes the byte bound (server memory stays flat) and gets
everything exactly once when it comes back; a Send flood is throttled."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import uuid
from pathlib import Path

from tidings.protocol import Accepted, Hello, Rejected, Send, encode

SERVER_ENV = {
    "TIDINGS_REQUIRE_E2EE": "false",
    "TIDINGS_SEND_QUEUE_BYTES": str(1024 * 1024),
}

PAYLOAD = 200 * 1024
FLOOD = 60  # 12 MiB for a reader that takes none of it


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def masked(payload: bytes, opcode: int = 0x2) -> bytes:
    """One client-to-server WebSocket frame."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_non_reader(port: int, token: str) -> socket.socket:
    """A raw WebSocket that says Hello and then never reads again (small receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    sock.sendall(masked(encode(Hello())))
    return sock


async def test_a_reader_that_never_reads_is_dropped_and_loses_nothing(server, server_kit):
    kit = server_kit(server)
    alice, bob, conv = await kit.direct_pair()
    sender = await kit.connect(alice)
    await sender.hello()
    raw = open_non_reader(server.port, bob.token)
    await asyncio.sleep(0.5)  # bob's Welcome and replay went out
    assert server.pid is not None
    before = rss_kib(server.pid)
    ids = []
    for n in range(FLOOD):
        ids.append(uuid.uuid4())
        accepted = await sender.post(conv, bytes([n % 256]) * PAYLOAD, id=ids[-1])
        assert isinstance(accepted, Accepted)
    await asyncio.sleep(1.0)
    grown = rss_kib(server.pid) - before
    print(f"server RSS grew by {grown} KiB for {FLOOD * PAYLOAD // 1024} KiB sent to a non-reader")
    assert "1013 too slow" in server.log_text()
    # Well below what was sent to bob (the outbox bound is 1 MiB; the rest is the allocator's).
    assert grown < FLOOD * PAYLOAD // 1024 // 2
    raw.close()

    peer = await kit.connect(bob)
    _, envelopes, _ = await peer.hello()
    got = [e.id for e in envelopes if e.kind == "msg"]
    assert got == ids  # everything, once, in order


async def test_a_send_flood_is_throttled(server_factory, server_kit):
    server = server_factory(
        env={"TIDINGS_SEND_RATE_DEVICE": "5", "TIDINGS_SEND_BURST_DEVICE": "20"}
    )
    kit = server_kit(server)
    alice, _, conv = await kit.direct_pair()
    peer = await kit.connect(alice)
    await peer.hello()
    frames = [Send(id=uuid.uuid4(), conv=conv, payload=b"f") for _ in range(60)]
    for frame in frames:
        await peer.send(frame)
    answers = [await peer.recv() for _ in frames]
    accepted = [a for a in answers if isinstance(a, Accepted)]
    refused = [a for a in answers if isinstance(a, Rejected)]
    assert 20 <= len(accepted) < 30
    assert refused and {r.code for r in refused} == {"rate_limited"}
    # Later, the same message goes through once.
    await asyncio.sleep(1.0)
    again = await peer.post(conv, b"f", id=refused[0].id)
    assert again.seq == len(accepted) + 2
