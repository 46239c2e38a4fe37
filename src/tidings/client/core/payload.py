"""The one place where message content becomes an envelope payload and back.

Sending: :func:`encode_bound` encodes content; :class:`~tidings.client.core.sealing.Sealer`
encrypts those bytes right before the ``Send`` goes out (per device for a direct conversation,
Sender Keys for a group). Receiving: :func:`open_envelope` decrypts an envelope with the
device's :class:`~tidings.client.core.sealing.EndToEnd` and decodes the content.
"""

from __future__ import annotations

import uuid

import msgspec

from tidings.protocol import Envelope
from tidings.protocol.content import Content, decode_content, encode_content

from .sealing import EndToEnd, Failed, Opened

#: :class:`Failed` reason of content that decrypted but names another conversation or message
#: id than the envelope that carried it (the server moved or relabelled a ciphertext)
MISBOUND = "misbound"


def encode_bound(content: Content, conv_id: str, message_id: uuid.UUID) -> bytes:
    """Turn content into the (not yet encrypted) payload of a ``Send`` frame with id
    ``message_id`` in conversation ``conv_id``. Both are written into the content, so they end up
    inside the ciphertext: :func:`open_bound` checks them against the envelope."""
    return encode_content(msgspec.structs.replace(content, conv=conv_id, id=message_id))


def open_payload(payload: bytes) -> Content | None:
    """Content of decrypted payload bytes, or None when it is not content this client
    understands (a newer version, garbage): such an envelope is never shown."""
    try:
        return decode_content(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def open_bound(env: Envelope, plaintext: bytes) -> Content | Failed | None:
    """The content of the decrypted ``plaintext`` that came in ``env``: :class:`Failed`
    (:data:`MISBOUND`) unless it names the envelope's conversation and message id; None when
    it is not content this client understands."""
    content = open_payload(plaintext)
    if content is None:
        return None
    if content.conv != env.conv or content.id != env.id:
        return Failed(MISBOUND)
    return content


def open_envelope(env: Envelope, e2ee: EndToEnd) -> Content | Failed | None:
    """The content of a conversation envelope; :class:`Failed` when its ciphertext
    does not decrypt or is bound to another conversation or message id; None when there is
    nothing to show (content this client does not understand, a group message waiting for its
    sender key, a ciphertext already purged)."""
    opened = e2ee.open_envelope(env)
    if isinstance(opened, Opened):
        return open_bound(env, opened.plaintext)
    if isinstance(opened, Failed):
        return opened
    return None
