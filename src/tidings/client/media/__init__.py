"""tidings.client.media: preparing attachments on the device before they are encrypted.

Guarantees: nothing in this package talks to the network. Photos are re-encoded without any
metadata (:mod:`.image`), voice notes are transcoded to Ogg Opus (:mod:`.voice`), videos get a
thumbnail (:mod:`.video`); the results are encrypted with a fresh key per file by
:mod:`tidings.crypto.attachment`, and their key, digest, size and descriptions travel only inside
the end-to-end-encrypted message as an :class:`.pointer.AttachmentPointer`. :mod:`.files` sniffs
what a file is, :mod:`.cache` keeps downloads in the profile directory (0700/0600).

The heavy modules (Pillow, PyAV) are imported on use: ``from tidings.client.media.image import
prepare_image``.
"""

from .errors import MediaError, MediaTooLargeError, UnsupportedMediaError, VoiceTooLongError
from .pointer import AttachmentKind, AttachmentPointer, decode_pointer, encode_pointer

__all__ = [
    "AttachmentKind",
    "AttachmentPointer",
    "MediaError",
    "MediaTooLargeError",
    "UnsupportedMediaError",
    "VoiceTooLongError",
    "decode_pointer",
    "encode_pointer",
]
