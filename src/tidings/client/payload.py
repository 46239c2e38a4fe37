"""The one place where message content becomes an envelope payload and back.

Until end-to-end encryption lands the payload is the content struct in clear; encryption slots in
here (encrypt after encoding, decrypt before decoding) without touching the rest of the client.
"""

from __future__ import annotations

import msgspec

from tidings.protocol.content import Content, decode_content, encode_content


def seal(content: Content) -> bytes:
    """Turn content into the opaque payload of a ``Send`` frame."""
    return encode_content(content)


def open_payload(payload: bytes) -> Content | None:
    """Content of an envelope payload, or None when it is not content this client understands
    (a newer version, garbage): such an envelope is stored as received but never shown."""
    try:
        return decode_content(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
