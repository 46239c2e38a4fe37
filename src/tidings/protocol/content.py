"""What a client puts inside an Envelope's opaque payload. The server never decodes this.

Until end-to-end encryption lands the payload is this struct in clear; afterwards it is the
plaintext inside the ciphertext. Tagged by ``t`` and versioned by ``v`` so clients can evolve it.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from tidings.protocol.attachment import AttachmentPointer

CONTENT_VERSION = 1
MAX_TEXT_CHARS = 64_000
#: attachments one message may carry
MAX_ATTACHMENTS = 10


class _Content(msgspec.Struct, tag_field="t", omit_defaults=True):
    v: int = CONTENT_VERSION
    #: the conversation and the message id this content was sent as: inside the ciphertext,
    #: so a receiver refuses a ciphertext the server moved to another conversation or id
    #: (filled by the client's payload codec, ``tidings.client.payload.seal``)
    conv: str = ""
    id: uuid.UUID | None = None


class Text(_Content, tag="text"):
    body: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)] = ""
    #: the message this one replies to
    reply_to: uuid.UUID | None = None


class Reaction(_Content, tag="reaction"):
    """Add (or with ``remove`` take back) an emoji reaction to message ``target``."""

    target: uuid.UUID | None = None
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] = "👍"
    remove: bool = False


class Media(_Content, tag="media"):
    """A message with attachments (photos, video, a voice note, files): each pointer holds the
    blob id, the attachment key and the digest, so it exists only inside the ciphertext.
    ``body`` is the caption (shown, searched and quoted like a text)."""

    body: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)] = ""
    attachments: Annotated[
        list[AttachmentPointer], msgspec.Meta(min_length=1, max_length=MAX_ATTACHMENTS)
    ] = msgspec.field(default_factory=list)
    reply_to: uuid.UUID | None = None


class Edit(_Content, tag="edit"):
    """Replace the text of the sender's own message ``target`` with ``body``. Receivers apply
    it only from the original sender and within :data:`EDIT_WINDOW_MS` of the original's
    server time; the earlier text is kept as the message's edit history."""

    target: uuid.UUID | None = None
    body: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)] = ""


class Delete(_Content, tag="delete"):
    """Delete the sender's own message ``target`` for everyone: receivers drop its text (and
    its edit history) and keep a "message deleted" line; only from the original sender and
    within :data:`DELETE_WINDOW_MS`."""

    target: uuid.UUID | None = None


class ProfileKey(_Content, tag="profile_key"):
    """The sender's profile key (32 bytes): with it a receiver fetches and decrypts the
    sender's profile (name, about, avatar) from the server. Sent when a conversation starts
    and again after the key rotates; never shown as a message."""

    key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)] = b"\0" * 32


#: how long after sending a message its sender may edit it (ms)
EDIT_WINDOW_MS = 24 * 3600 * 1000
#: how long after sending a message its sender may delete it for everyone (ms)
DELETE_WINDOW_MS = 24 * 3600 * 1000

Content = Text | Reaction | Media | Edit | Delete | ProfileKey

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Content] = msgspec.msgpack.Decoder(Content)


def encode_content(content: Content) -> bytes:
    return _encoder.encode(content)


def decode_content(payload: bytes) -> Content:
    """Raises ``msgspec.DecodeError``/``ValidationError`` on anything that is not content
    (also on input nested too deeply, which msgspec answers with ``RecursionError``)."""
    try:
        return _decoder.decode(payload)
    except RecursionError:
        raise msgspec.DecodeError("MessagePack data is malformed: nested too deeply") from None
