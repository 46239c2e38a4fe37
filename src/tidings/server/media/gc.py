"""Garbage collection of blobs, independent of bucket lifecycle rules.

Guarantees: an upload slot never completed is deleted once it is older than
:attr:`.settings.MediaSettings.abandoned_upload_ttl_s` (24 h by default), and a completed blob once
it is older than :attr:`.settings.MediaSettings.retention_s` (45 days by default) — counted from
completion. Each deletion is reported to ``on_delete`` (the quota ledger releases the bytes
there), and one failing deletion does not stop the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .blobstore import BlobStore, ExpiredBlob

__all__ = ["GcReport", "collect_garbage"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcReport:
    """What one collection did."""

    deleted: list[ExpiredBlob] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(blob.size for blob in self.deleted)


async def collect_garbage(
    store: BlobStore,
    *,
    now: float | None = None,
    on_delete: Callable[[ExpiredBlob], Awaitable[None]] | None = None,
) -> GcReport:
    """Delete every abandoned upload and every blob past retention, as of ``now``."""
    report = GcReport()
    for blob in await store.list_expired(time.time() if now is None else now):
        try:
            await store.delete(blob.blob_id)
            if on_delete is not None:
                await on_delete(blob)
        except Exception:
            log.exception("could not delete blob %s", blob.blob_id)
            report.failed.append(blob.blob_id)
        else:
            report.deleted.append(blob)
    return report
