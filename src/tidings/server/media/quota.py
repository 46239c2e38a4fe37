"""Per-account quota accounting for blobs, and the maximum blob size.

Guarantees: :meth:`QuotaManager.reserve` refuses a blob above the maximum size (100 MiB by
default) or one that would take the account above its quota, **before** an upload slot is made;
bytes are counted from the moment a slot is reserved (so abandoned uploads count until the GC
releases them) and released exactly once. The bookkeeping table will live in the server store;
:class:`QuotaLedger` is the small contract it must meet, :class:`MemoryQuotaLedger` an
in-memory implementation (tests, single-process use).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .blobstore import BlobTooLargeError
from .settings import MediaSettings

__all__ = ["MemoryQuotaLedger", "QuotaExceededError", "QuotaLedger", "QuotaManager"]


class QuotaExceededError(BlobTooLargeError):
    """The account's live blobs would exceed its quota."""


class QuotaLedger(Protocol):
    """Which account holds which blob of how many bytes."""

    async def add(self, account: str, blob_id: str, size: int, limit: int) -> bool:
        """Record the blob if the account's total stays ≤ ``limit`` (atomically); else ``False``."""
        ...

    async def remove(self, blob_id: str) -> tuple[str, int] | None:
        """Forget the blob; its ``(account, size)``, or ``None`` if it was not recorded."""
        ...

    async def usage(self, account: str) -> int:
        """Bytes the account's recorded blobs take."""
        ...


class MemoryQuotaLedger:
    """A :class:`QuotaLedger` in memory."""

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[str, int]] = {}
        self._usage: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def add(self, account: str, blob_id: str, size: int, limit: int) -> bool:
        async with self._lock:
            if blob_id in self._blobs:
                return True
            used = self._usage.get(account, 0)
            if used + size > limit:
                return False
            self._blobs[blob_id] = (account, size)
            self._usage[account] = used + size
            return True

    async def remove(self, blob_id: str) -> tuple[str, int] | None:
        async with self._lock:
            entry = self._blobs.pop(blob_id, None)
            if entry is not None:
                account, size = entry
                self._usage[account] -= size
                if not self._usage[account]:
                    del self._usage[account]
            return entry

    async def usage(self, account: str) -> int:
        return self._usage.get(account, 0)


class QuotaManager:
    """Checks sizes against the maximum and the account quota, and keeps the ledger."""

    def __init__(self, ledger: QuotaLedger, settings: MediaSettings) -> None:
        self._ledger = ledger
        self._settings = settings

    def check_size(self, size: int) -> None:
        """Refuse a size outside 1..max_blob_size."""
        if size <= 0:
            raise BlobTooLargeError("a blob has at least one byte")
        if size > self._settings.max_blob_size:
            raise BlobTooLargeError(
                f"{size} bytes exceeds the {self._settings.max_blob_size} byte maximum"
            )

    async def reserve(self, account: str, blob_id: str, size: int) -> None:
        """Count ``size`` bytes of ``blob_id`` against ``account``, or raise."""
        self.check_size(size)
        if not await self._ledger.add(account, blob_id, size, self._settings.account_quota_bytes):
            raise QuotaExceededError(f"account quota of {self._settings.account_quota_bytes} bytes")

    async def release(self, blob_id: str) -> None:
        """Give back the bytes of a deleted blob (no-op if unknown)."""
        await self._ledger.remove(blob_id)

    async def usage(self, account: str) -> int:
        return await self._ledger.usage(account)
