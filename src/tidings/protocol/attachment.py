"""The attachment pointer: everything a recipient needs to fetch and decrypt one attachment.

Part of the end-to-end-encrypted message schema (:class:`tidings.protocol.content.Media` carries
pointers), so it lives with the wire types; the server never decodes it.

Guarantees: an :class:`AttachmentPointer` travels **only inside the end-to-end-encrypted message**
— it holds the 64-byte attachment key, the ciphertext digest and the real size, none of which the
server may see. The server knows the blob only by its random id and its padded ciphertext length.

Every field is bounded, so a decoded pointer from a peer can be trusted in shape (not content):
msgspec checks lengths, ranges and patterns, and :meth:`AttachmentPointer.__post_init__` checks the
cross-field rules (a waveform only on voice notes, a file name without path separators...).
The recipient then checks the digest and MAC (``tidings.crypto.attachment.decrypt_stream``)
before any plaintext is used.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "ATTACHMENT_KINDS",
    "BLOB_ID_PATTERN",
    "MAX_ATTACHMENT_SIZE",
    "AttachmentKind",
    "AttachmentPointer",
    "decode_pointer",
    "encode_pointer",
]

#: Blob ids are ≥128 random bits, URL-safe base64 without padding (the server makes them).
BLOB_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{22,64}$"
#: An upper bound for the field only; the server enforces its own (smaller) maximum.
MAX_ATTACHMENT_SIZE: Final = 4 * 1024**3
MAX_DURATION_MS: Final = 24 * 3600 * 1000
MAX_CAPTION_CHARS: Final = 4096
WAVEFORM_LENGTH: Final = 64

AttachmentKind = Literal["image", "video", "voice", "file"]
ATTACHMENT_KINDS: Final[tuple[AttachmentKind, ...]] = ("image", "video", "voice", "file")

BlobId = Annotated[str, Meta(pattern=BLOB_ID_PATTERN)]
Key = Annotated[bytes, Meta(min_length=64, max_length=64)]
Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]
Size = Annotated[int, Meta(ge=0, le=MAX_ATTACHMENT_SIZE)]
ContentType = Annotated[
    str,
    Meta(
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(; ?[ -~]*)?$",
    ),
]
FileName = Annotated[str, Meta(min_length=1, max_length=255)]
Dimension = Annotated[int, Meta(ge=1, le=65_535)]
DurationMs = Annotated[int, Meta(ge=0, le=MAX_DURATION_MS)]
Blurhash = Annotated[
    str, Meta(min_length=6, max_length=200, pattern=r"^[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]+$")
]
Waveform = Annotated[bytes, Meta(min_length=WAVEFORM_LENGTH, max_length=WAVEFORM_LENGTH)]
Caption = Annotated[str, Meta(max_length=MAX_CAPTION_CHARS)]

_FORBIDDEN_NAME_CHARS: Final = (
    frozenset("/\\\x00") | frozenset(chr(c) for c in range(32)) | {"\x7f"}
)


class AttachmentPointer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One attachment, as carried inside an encrypted message.

    ``waveform`` is 64 bytes, each the peak level of one time bucket scaled to **0..255**
    (255 = the loudest bucket of the note).
    """

    blob_id: BlobId
    """The server's random id of the ciphertext blob."""
    key: Key
    """AES-256 key ‖ HMAC-SHA256 key, fresh for this file."""
    digest: Digest
    """SHA-256 of the whole ciphertext; checked before anything is decrypted."""
    size: Size
    """The real plaintext size in bytes (the ciphertext is padded to a bucket)."""
    content_type: ContentType
    """MIME type of the plaintext, e.g. ``image/jpeg`` or ``audio/ogg; codecs=opus``."""
    kind: AttachmentKind
    """How the app presents it: ``image``, ``video``, ``voice`` or ``file``."""
    file_name: FileName | None = None
    """The sender's file name (a base name, no directories), if any."""
    width: Dimension | None = None
    height: Dimension | None = None
    duration_ms: DurationMs | None = None
    blurhash: Blurhash | None = None
    """A BlurHash placeholder (4x3 components) shown while the image or thumbnail loads."""
    waveform: Waveform | None = None
    caption: Caption | None = None

    def __post_init__(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height come together")
        if self.waveform is not None and self.kind != "voice":
            raise ValueError("only voice notes carry a waveform")
        if self.duration_ms is not None and self.kind not in ("video", "voice"):
            raise ValueError("only video and voice carry a duration")
        if self.file_name is not None and (
            self.file_name in (".", "..") or _FORBIDDEN_NAME_CHARS.intersection(self.file_name)
        ):
            raise ValueError("file name must be a plain base name")


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(AttachmentPointer)


def encode_pointer(pointer: AttachmentPointer) -> bytes:
    """Msgpack bytes of ``pointer``, for embedding in an encrypted payload."""
    return _ENCODER.encode(pointer)


def decode_pointer(data: bytes) -> AttachmentPointer:
    """Decode and validate a pointer; raises :class:`msgspec.ValidationError` if out of bounds."""
    return _DECODER.decode(data)
