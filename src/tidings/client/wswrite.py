"""Writing a burst of frames to the client's WebSocket in one go.

A bot's burst of messages leaves as hundreds of ``Send`` frames at once. Sent one by one
through websockets' ``Connection.send``, each costs a trip through its send context, a
``Frame`` object and its serialization, four bytes from ``os.urandom`` and a write (a system
call) of its own. :func:`send_binaries` frames them all here and writes them with one call.

RFC 6455 (section 5.3) requires a client to mask every frame with a fresh, unpredictable key:
each frame still gets its own four bytes, from one ``os.urandom`` call for the whole burst (the
same source websockets draws them from), and the payload is masked with websockets' own C
``apply_mask``. Where websockets would do more than framing (an extension negotiated, its debug
log on), it frames them itself as before, and the bytes are still written together.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")
#: FIN and the binary opcode; the mask bit of the length byte
_FIN_BINARY = 0x82
_MASKED = 0x80


def masked_header(size: int) -> bytes:
    """The header of a final, masked binary frame of ``size`` bytes (RFC 6455 section 5.2),
    without its masking key: what websockets' ``Frame.serialize`` writes for a client
    without extensions."""
    if size < 126:
        return bytes((_FIN_BINARY, _MASKED | size))
    if size < 65536:
        return _HEADER_16.pack(_FIN_BINARY, _MASKED | 126, size)
    return _HEADER_64.pack(_FIN_BINARY, _MASKED | 127, size)


def binary_frames(messages: Sequence[bytes], keys: bytes) -> list[bytes]:
    """The frames of ``messages`` (one final binary frame each), masked with the four bytes
    of ``keys`` at their index (``keys`` holds ``4 * len(messages)`` bytes)."""
    parts: list[bytes] = []
    for n, data in enumerate(messages):
        key = keys[4 * n : 4 * n + 4]
        parts += (masked_header(len(data)), key, apply_mask(data, key))
    return parts


async def send_binaries(socket: ClientConnection, messages: Sequence[bytes]) -> None:
    """Send each of ``messages`` as a binary message of its own, in order, written to the
    socket together. Raises websockets' ``ConnectionClosed`` as ``send`` does."""
    if not messages:
        return
    protocol = socket.protocol
    async with socket.send_context():  # checks the connection is open; drains afterwards
        if protocol.extensions or protocol.debug or protocol.expect_continuation_frame:
            for data in messages:
                protocol.send_binary(data)  # websockets frames them (or raises as it would)
            parts = protocol.data_to_send()
        else:
            parts = protocol.data_to_send()  # whatever websockets queued first (a pong)
            parts += binary_frames(messages, os.urandom(4 * len(messages)))
        socket.transport.write(b"".join(parts))
