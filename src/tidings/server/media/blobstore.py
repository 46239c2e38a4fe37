"""The blob store contract: opaque ciphertext blobs behind presigned, expiring URLs.

Guarantees, first:

* **The server only ever sees ciphertext.** Clients encrypt every attachment with a fresh key
  before upload (``tidings.crypto.attachment``, which the server never imports); a blob is an
  opaque byte string stored byte-for-byte as received, named by a random id of 192 bits.
* **Exact sizes.** An upload slot is created for an exact content length, at most
  :attr:`.settings.MediaSettings.max_blob_size`; a blob becomes downloadable only after
  :meth:`BlobStore.complete_upload` verified that every part arrived and the stored length is
  exactly that size.
* **Expiring, unforgeable URLs.** Upload URLs live 15 minutes and download URLs 1 hour by
  default; URLs name one blob, one method, one length and (for parts) one offset.
* **Resumable.** Blobs above :attr:`.settings.MediaSettings.resumable_threshold` are uploaded in
  parts; after a cut, :meth:`BlobStore.upload_status` tells how many bytes arrived (whole parts),
  :meth:`BlobStore.presign_parts` gives fresh URLs, and only the missing parts are sent again.

Who may upload or download (accounts, quotas, which blob belongs to which message) is decided
above this layer (:mod:`.quota` and the REST routes); a store only keeps bytes and lifetimes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from .settings import MediaSettings

__all__ = [
    "BLOB_ID_RE",
    "BlobError",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStateError",
    "BlobStore",
    "BlobTooLargeError",
    "ExpiredBlob",
    "SizeMismatchError",
    "UploadIncompleteError",
    "UploadPart",
    "UploadSlot",
    "UploadStatus",
    "check_blob_id",
    "new_blob_id",
    "plan_parts",
]

#: 24 random bytes, URL-safe base64 without padding: 32 characters.
BLOB_ID_BYTES: Final = 24
BLOB_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class BlobError(Exception):
    """Base class of the blob store's errors."""


class BlobNotFoundError(BlobError):
    """No such blob or upload slot (or it was deleted)."""


class BlobTooLargeError(BlobError):
    """The requested size exceeds the maximum blob size (or the account's quota)."""


class BlobStateError(BlobError):
    """The operation does not fit the blob's state (e.g. downloading a pending upload)."""


class UploadIncompleteError(BlobStateError):
    """:meth:`BlobStore.complete_upload` found parts missing; the upload may go on."""


class SizeMismatchError(BlobStateError):
    """The stored bytes do not have the slot's exact length; the stored bytes were discarded."""


def new_blob_id() -> str:
    """A fresh blob id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(BLOB_ID_BYTES)


def check_blob_id(blob_id: str) -> str:
    """``blob_id`` if it has the shape of one, else :class:`BlobNotFoundError` (never a path)."""
    if not BLOB_ID_RE.fullmatch(blob_id):
        raise BlobNotFoundError("malformed blob id")
    return blob_id


def plan_parts(size: int, settings: MediaSettings) -> tuple[tuple[int, int], ...]:
    """(offset, length) of each part: one part up to the threshold, fixed-size parts above."""
    if size <= 0:
        raise BlobError("a blob has at least one byte")
    if size > settings.max_blob_size:
        raise BlobTooLargeError(f"{size} bytes exceeds the {settings.max_blob_size} byte maximum")
    if size <= settings.resumable_threshold:
        return ((0, size),)
    step = settings.part_size
    return tuple((offset, min(step, size - offset)) for offset in range(0, size, step))


@dataclass(frozen=True, slots=True)
class UploadPart:
    """One PUT of an upload: ``length`` bytes at ``offset``, to ``url`` (1-based ``number``)."""

    number: int
    offset: int
    length: int
    url: str


@dataclass(frozen=True, slots=True)
class UploadSlot:
    """Where and how to upload a blob: PUT each part's bytes to its URL before ``expires_at``.

    ``parts`` lists only the parts still to send (all of them for a new slot).
    """

    blob_id: str
    size: int
    expires_at: int
    resumable: bool
    parts: tuple[UploadPart, ...]


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """How far an upload got: ``received`` counts the bytes of the leading complete parts."""

    blob_id: str
    size: int
    received: int
    completed_parts: frozenset[int]
    complete: bool


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob's size and lifetimes (epoch seconds)."""

    blob_id: str
    size: int
    created_at: float
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class ExpiredBlob:
    """A blob the GC should delete, and why."""

    blob_id: str
    size: int
    reason: Literal["abandoned", "retention"]


class BlobStore(Protocol):
    """Storage of opaque blobs behind presigned URLs (see the module docstring)."""

    @property
    def settings(self) -> MediaSettings:
        """The limits and lifetimes in force."""
        ...

    async def create_upload(self, size: int) -> UploadSlot:
        """Reserve a new blob id for exactly ``size`` bytes; returns the presigned part URLs."""
        ...

    async def presign_parts(self, blob_id: str) -> UploadSlot:
        """Fresh URLs for the parts not yet received (to resume an upload)."""
        ...

    async def upload_status(self, blob_id: str) -> UploadStatus:
        """How many bytes of a pending upload arrived (whole parts, from the start)."""
        ...

    async def complete_upload(self, blob_id: str) -> BlobInfo:
        """Verify all parts and the exact length, then make the blob downloadable."""
        ...

    async def presign_download(self, blob_id: str) -> str:
        """A presigned GET URL of a completed blob."""
        ...

    async def info(self, blob_id: str) -> BlobInfo | None:
        """The blob's record, or ``None``."""
        ...

    async def delete(self, blob_id: str) -> bool:
        """Delete a blob or pending upload; ``True`` if something was deleted."""
        ...

    async def list_expired(self, now: float) -> list[ExpiredBlob]:
        """Uploads abandoned past their TTL and completed blobs past retention, as of ``now``."""
        ...


def received_prefix(parts: tuple[tuple[int, int], ...], done: frozenset[int]) -> int:
    """Bytes covered by the complete parts 1..k before the first missing one."""
    received = 0
    for number, (_, length) in enumerate(parts, 1):
        if number not in done:
            break
        received += length
    return received
