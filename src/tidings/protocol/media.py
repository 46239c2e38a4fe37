"""REST bodies of attachment blobs (``/v1/media``); the routes are in :mod:`.routes`.

A client encrypts an attachment with a fresh key (``tidings.crypto.attachment``), asks for an
upload slot for the exact ciphertext length, PUTs the bytes to the presigned URL(s), completes
the upload and sends the blob id inside the end-to-end-encrypted message
(:class:`~tidings.protocol.attachment.AttachmentPointer`). A recipient asks for a download URL
for that id and fetches the ciphertext. Blob bytes never travel through these JSON routes: the
URLs point at the server's blob endpoint (:data:`.routes.BLOB_PATH`, authorised by the URL's
signature alone) or straight at an S3 bucket.

Slots above 8 MiB (the server's ``media_part_size``) come in parts: after a cut the client asks
which parts arrived (:class:`UploadStatus`) and for fresh URLs of the missing ones
(``resume``); parts already received are never sent again.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tidings.protocol.attachment import BLOB_ID_PATTERN, MAX_ATTACHMENT_SIZE, AttachmentKind

BlobId = Annotated[str, msgspec.Meta(pattern=BLOB_ID_PATTERN)]
BlobSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTACHMENT_SIZE)]


class NewUpload(msgspec.Struct, forbid_unknown_fields=True):
    """Ask for an upload slot: ``size`` is the exact ciphertext length; ``kind`` the class of
    content (the server keeps it for statistics only; it never sees the content type)."""

    size: BlobSize
    kind: AttachmentKind = "file"


class UploadPart(msgspec.Struct):
    """PUT exactly ``length`` bytes (the ciphertext at ``offset``) to ``url`` before the slot's
    ``expires_at``. ``url`` may be relative: it is then resolved against the server URL."""

    number: int
    offset: int
    length: int
    url: str


class UploadSlot(msgspec.Struct):
    """Where to upload ``blob_id``: the parts still to send (all of them for a new slot)."""

    blob_id: str
    size: int
    #: epoch seconds after which the URLs no longer work (ask ``resume`` for fresh ones)
    expires_at: int
    resumable: bool
    parts: list[UploadPart]


class UploadStatus(msgspec.Struct):
    """How far an upload got: ``received`` bytes of leading complete parts, the part numbers
    received, and whether the upload was completed."""

    blob_id: str
    size: int
    received: int
    parts: list[int]
    complete: bool


class BlobCompleted(msgspec.Struct):
    blob_id: str
    size: int


class DownloadUrl(msgspec.Struct):
    """A presigned GET of the blob's ciphertext (``size`` bytes); may be relative."""

    blob_id: str
    size: int
    url: str
    expires_at: int


class MediaUsage(msgspec.Struct):
    """The calling account's blob bytes and its limits."""

    used: int
    quota: int
    max_size: int
