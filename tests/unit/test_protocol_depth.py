"""MessagePack nested a thousand levels deep is undecodable input, not a RecursionError."""

from __future__ import annotations

import msgspec
import pytest

from tidings.protocol import (
    Ping,
    decode_client_frame,
    decode_server_frame,
    decode_system_event,
    encode,
)
from tidings.protocol.content import decode_content
from tidings.protocol.frames import NestedTooDeeply

DEEP = [
    b"\x91" * 100_000 + b"\xc0",
    b"\x81\xa1a" * 5000 + b"\xc0",
    b"\x82\xa1t\xa4ping\xa1x" + b"\x91" * 5000 + b"\xc0",
    b"\x82\xa1t\xa4ping\xa1x" + b"\x81\xa1a" * 5000 + b"\xc0",
]


@pytest.mark.parametrize("data", DEEP)
@pytest.mark.parametrize(
    "decode", [decode_client_frame, decode_server_frame, decode_system_event, decode_content]
)
def test_deep_nesting_is_a_decode_error(decode, data: bytes):
    with pytest.raises(msgspec.DecodeError):
        decode(data)


def test_the_error_says_why_and_shallow_frames_still_decode():
    with pytest.raises(NestedTooDeeply, match="nested too deeply"):
        decode_client_frame(DEEP[2])
    assert decode_client_frame(encode(Ping(n=3))) == Ping(n=3)
    # an ignored field nested a few levels is fine
    assert decode_client_frame(b"\x82\xa1t\xa4ping\xa1x" + b"\x91" * 50 + b"\xc0") == Ping()
