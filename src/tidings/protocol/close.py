"""WebSocket close codes of ``/v1/ws`` and what a client does on each.

Besides the standard codes, the server uses four in the private range. A *fatal* code means
retrying cannot help: the client stops reconnecting and tells the user why.

- 1000 normal, 1001 going away (server shutdown): reconnect with backoff
- 1007 invalid frame payload data: a text frame that is not UTF-8 (RFC 6455 requires failing
  the connection; frames are binary, a valid text frame only gets ``bad_frame``)
- 1009 message too big: a frame over twice ``MAX_FRAME_BYTES`` (up to that, ``frame_too_large``)
- 1011 internal error (the replay after Hello failed): reconnect with backoff
- 1013 try again later (the device could not keep up with its frames): reconnect with backoff
- 4401 unauthorized: the token is invalid, or the device was removed (by another device of the
  account, or because the account's identity key was replaced) — fatal
- 4408 idle: nothing received for the server's idle timeout — reconnect
- 4409 replaced: a newer connection of the same device took over — fatal for this connection
  (reconnecting would only start a fight with the newer one)
- 4426 unsupported protocol version — fatal until the client is updated
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    IDLE = 4408
    REPLACED = 4409
    UNSUPPORTED_VERSION = 4426


#: Codes after which reconnecting cannot help.
FATAL_CLOSE_CODES: frozenset[int] = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.REPLACED, CloseCode.UNSUPPORTED_VERSION}
)


def is_fatal(code: int | None) -> bool:
    """Whether a connection closed with ``code`` must not be reopened automatically."""
    return code is not None and code in FATAL_CLOSE_CODES


#: What the user is told when a fatal code ends the connection.
FATAL_REASONS: dict[int, str] = {
    CloseCode.UNAUTHORIZED: "this device was removed from the account, or its token is invalid",
    CloseCode.REPLACED: "another connection of this device took over",
    CloseCode.UNSUPPORTED_VERSION: "the server speaks a newer protocol: update Tidings",
}
