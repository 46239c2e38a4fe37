"""The attachment pointer, re-exported: it is part of the E2EE message schema and lives in
:mod:`tidings.protocol.attachment` (the server never decodes it)."""

from tidings.protocol.attachment import (
    BLOB_ID_PATTERN,
    MAX_ATTACHMENT_SIZE,
    AttachmentKind,
    AttachmentPointer,
    decode_pointer,
    encode_pointer,
)

__all__ = [
    "BLOB_ID_PATTERN",
    "MAX_ATTACHMENT_SIZE",
    "AttachmentKind",
    "AttachmentPointer",
    "decode_pointer",
    "encode_pointer",
]
