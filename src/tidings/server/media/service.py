"""The attachment service behind the ``/v1/media`` routes: slots, ownership, quotas, GC.

Guarantees, first:

* **Ciphertext only.** Clients upload attachments encrypted with a fresh key per file; the key,
  the digest and the real size travel only inside the end-to-end-encrypted message. The
  server knows a blob by its random id, its owner, its padded length and the class of content
  the client named (image, video, voice, file).
* **Quota before bytes.** A slot is refused above ``max_blob_size`` (``payload_too_large``) or
  when the account's live blobs would pass its quota (``quota_exceeded``), before any URL
  exists; the ledger check and the record are one transaction of the store.
* **Owner only**, for the upload's status, resume, complete and delete (anybody else: 404).
  **Any signed-in device may download** a completed blob whose id it knows — ids are 192
  random bits that only members of the conversation saw (inside the ciphertext), and the
  bytes are ciphertext under a key the server never had, as with Signal's attachment CDN.
* **Garbage collection.** Uploads never completed go after ``abandoned_upload_ttl_s`` (24 h),
  completed blobs ``retention_s`` (45 days) after completion — the server cannot see which
  messages still refer to a blob, so retention is the only rule. Deleting releases the quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from tidings.protocol import ErrorCode

from .blobstore import (
    BlobError,
    BlobNotFoundError,
    BlobStateError,
    BlobStore,
    BlobTooLargeError,
    ExpiredBlob,
    UploadSlot,
    UploadStatus,
    check_blob_id,
)
from .gc import GcReport, collect_garbage
from .quota import QuotaExceededError, QuotaLedger, QuotaManager

__all__ = [
    "BlobRecord",
    "BlobRecords",
    "MediaRefused",
    "MediaService",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """One row of the server's blob table."""

    blob_id: str
    owner: str
    size: int
    kind: str
    parts: int
    upload_id: str | None
    created_at: int
    completed_at: int | None


class BlobRecords(Protocol):
    """The store's blob table (the quota ledger's rows, with the upload's details)."""

    async def blob_started(
        self, blob_id: str, *, kind: str, parts: int, upload_id: str | None, now: int
    ) -> None: ...

    async def blob_completed(self, blob_id: str, now: int) -> None: ...

    async def blob(self, blob_id: str) -> BlobRecord | None: ...

    async def blobs_older_than(self, before: int, *, completed: bool) -> list[BlobRecord]: ...


class MediaRefused(Exception):
    """A refused media request, with its protocol error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ms() -> int:
    return time.time_ns() // 1_000_000


class MediaService:
    """Blob slots for accounts: :class:`BlobStore` + :class:`QuotaManager` + the blob table."""

    def __init__(
        self,
        blobs: BlobStore,
        records: BlobRecords,
        ledger: QuotaLedger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs = blobs
        self.records = records
        self.quota = QuotaManager(ledger, blobs.settings)
        self._clock = clock

    @property
    def max_size(self) -> int:
        return self.blobs.settings.max_blob_size

    @property
    def quota_bytes(self) -> int:
        return self.blobs.settings.account_quota_bytes

    async def new_upload(self, account: str, size: int, kind: str) -> UploadSlot:
        try:
            self.quota.check_size(size)
        except BlobTooLargeError as exc:
            raise MediaRefused(ErrorCode.PAYLOAD_TOO_LARGE, str(exc)) from None
        if await self.quota.usage(account) + size > self.quota_bytes:
            raise MediaRefused(ErrorCode.QUOTA_EXCEEDED, f"media quota of {self.quota_bytes} bytes")
        slot = await self.blobs.create_upload(size)
        try:
            await self.quota.reserve(account, slot.blob_id, size)
        except QuotaExceededError:
            await self.blobs.delete(slot.blob_id)
            raise MediaRefused(
                ErrorCode.QUOTA_EXCEEDED, f"media quota of {self.quota_bytes} bytes"
            ) from None
        await self.records.blob_started(
            slot.blob_id, kind=kind, parts=max(1, len(slot.parts)), upload_id=None, now=_ms()
        )
        return slot

    async def _own(self, account: str, blob_id: str) -> None:
        try:
            check_blob_id(blob_id)
        except BlobNotFoundError:
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob") from None
        record = await self.records.blob(blob_id)
        if record is None or record.owner != account:
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob")

    async def status(self, account: str, blob_id: str) -> UploadStatus:
        await self._own(account, blob_id)
        try:
            return await self.blobs.upload_status(blob_id)
        except BlobNotFoundError:
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob") from None

    async def resume(self, account: str, blob_id: str) -> UploadSlot:
        await self._own(account, blob_id)
        try:
            return await self.blobs.presign_parts(blob_id)
        except BlobNotFoundError:
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob") from None
        except BlobStateError as exc:
            raise MediaRefused(ErrorCode.CONFLICT, str(exc)) from None

    async def complete(self, account: str, blob_id: str) -> int:
        await self._own(account, blob_id)
        try:
            info = await self.blobs.complete_upload(blob_id)
        except BlobNotFoundError:
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob") from None
        except BlobStateError as exc:
            raise MediaRefused(ErrorCode.CONFLICT, str(exc)) from None
        await self.records.blob_completed(blob_id, _ms())
        return info.size

    async def download(self, blob_id: str) -> tuple[str, int, int]:
        """(URL, size, expiry in epoch seconds) of a completed blob, for any signed-in device."""
        try:
            check_blob_id(blob_id)
            info = await self.blobs.info(blob_id)
            if info is None or info.completed_at is None:
                raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob")
            url = await self.blobs.presign_download(blob_id)
        except (BlobNotFoundError, BlobStateError):
            raise MediaRefused(ErrorCode.NOT_FOUND, "no such blob") from None
        expires = int(self._clock()) + self.blobs.settings.download_url_ttl_s
        return url, info.size, expires

    async def delete(self, account: str, blob_id: str) -> None:
        await self._own(account, blob_id)
        await self.blobs.delete(blob_id)
        await self.quota.release(blob_id)

    async def usage(self, account: str) -> int:
        return await self.quota.usage(account)

    # ------------------------------------------------------------------ garbage collection

    async def collect(self, now: float | None = None) -> GcReport:
        """Delete expired blobs from the blob store and the ledger; also forget ledger rows
        whose blob the store no longer has (deleted by hand, a bucket lifecycle rule)."""
        now = self._clock() if now is None else now

        async def released(blob: ExpiredBlob) -> None:
            await self.quota.release(blob.blob_id)

        report = await collect_garbage(self.blobs, now=now, on_delete=released)
        settings = self.blobs.settings
        for completed, ttl in (
            (False, settings.abandoned_upload_ttl_s),
            (True, settings.retention_s),
        ):
            for record in await self.records.blobs_older_than(
                int((now - ttl) * 1000), completed=completed
            ):
                try:
                    await self.blobs.delete(record.blob_id)
                except BlobError:
                    log.warning("could not delete expired blob %s", record.blob_id)
                    continue
                await self.quota.release(record.blob_id)
                reason: Literal["abandoned", "retention"] = (
                    "retention" if completed else "abandoned"
                )
                report.deleted.append(ExpiredBlob(record.blob_id, record.size, reason))
        return report

    async def collect_forever(
        self, interval: float, rotate: Callable[[], None] | None = None
    ) -> None:
        """Run :meth:`collect` (and ``rotate``, the URL key rotation) every ``interval`` s."""
        while True:
            with contextlib.suppress(Exception):
                if rotate is not None:
                    rotate()
            try:
                report = await self.collect()
            except Exception:
                log.exception("collecting expired blobs failed")
            else:
                if report.deleted:
                    log.info(
                        "media GC: deleted %d blobs (%d bytes)",
                        len(report.deleted),
                        report.freed_bytes,
                    )
            await asyncio.sleep(interval)
