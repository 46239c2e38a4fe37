"""Attachment blobs in the SQLite store: the ``blobs`` table (owner, size, parts, upload id,
times) and the per-account quota ledger (``blob_usage``), schema component ``media``.

:class:`SqliteQuotaLedger` is the :class:`tidings.server.media.quota.QuotaLedger` on these
tables (``add`` checks the limit and records the blob in one write transaction, so concurrent
uploads cannot overshoot a quota; ``remove`` gives the bytes back exactly once); the
:class:`MediaBlobs` part of the store is :class:`tidings.server.media.service.BlobRecords`.
"""

from __future__ import annotations

import sqlite3

from tidings.server.media.service import BlobRecord
from tidings.server.store.sqlite.writer import Database

_COLUMNS = "id, owner, size, kind, parts, upload_id, created_at, completed_at"


def _record(row: tuple[object, ...]) -> BlobRecord:
    blob_id, owner, size, kind, parts, upload_id, created, completed = row
    return BlobRecord(
        blob_id=str(blob_id),
        owner=str(owner),
        size=int(str(size)),
        kind=str(kind),
        parts=int(str(parts)),
        upload_id=None if upload_id is None else str(upload_id),
        created_at=int(str(created)),
        completed_at=None if completed is None else int(str(completed)),
    )


class MediaBlobs(Database):
    # ------------------------------------------------------------------ the quota ledger

    async def media_reserve(self, account: str, blob_id: str, size: int, limit: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone():
                return True
            row = conn.execute(
                "SELECT bytes FROM blob_usage WHERE account_id = ?", (account,)
            ).fetchone()
            used = 0 if row is None else int(row[0])
            if used + size > limit:
                return False
            conn.execute(
                "INSERT INTO blobs (id, owner, size, created_at)"
                " VALUES (?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
                (blob_id, account, size),
            )
            conn.execute(
                "INSERT INTO blob_usage VALUES (?, ?) ON CONFLICT (account_id)"
                " DO UPDATE SET bytes = bytes + excluded.bytes",
                (account, size),
            )
            return True

        return await self._write(tx)

    async def media_release(self, blob_id: str) -> tuple[str, int] | None:
        def tx(conn: sqlite3.Connection) -> tuple[str, int] | None:
            row = conn.execute("SELECT owner, size FROM blobs WHERE id = ?", (blob_id,)).fetchone()
            if row is None:
                return None
            owner, size = str(row[0]), int(row[1])
            conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
            conn.execute(
                "UPDATE blob_usage SET bytes = max(0, bytes - ?) WHERE account_id = ?",
                (size, owner),
            )
            conn.execute("DELETE FROM blob_usage WHERE account_id = ? AND bytes = 0", (owner,))
            return owner, size

        return await self._write(tx)

    async def media_usage(self, account: str) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT bytes FROM blob_usage WHERE account_id = ?", (account,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(q)

    # ------------------------------------------------------------------ BlobRecords

    async def blob_started(
        self, blob_id: str, *, kind: str, parts: int, upload_id: str | None, now: int
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE blobs SET kind = ?, parts = ?, upload_id = ?, created_at = ? WHERE id = ?",
                (kind, parts, upload_id, now, blob_id),
            )

        await self._write(tx)

    async def blob_completed(self, blob_id: str, now: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE blobs SET completed_at = ?, upload_id = NULL"
                " WHERE id = ? AND completed_at IS NULL",
                (now, blob_id),
            )

        await self._write(tx)

    async def blob(self, blob_id: str) -> BlobRecord | None:
        def q(conn: sqlite3.Connection) -> BlobRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM blobs WHERE id = ?",  # noqa: S608 - constant columns
                (blob_id,),
            ).fetchone()
            return None if row is None else _record(row)

        return await self._read(q)

    async def blobs_older_than(self, before: int, *, completed: bool) -> list[BlobRecord]:
        """Open uploads created (or completed blobs completed) before ``before`` ms."""
        where = (
            "completed_at IS NOT NULL AND completed_at < ?"
            if completed
            else "completed_at IS NULL AND created_at < ?"
        )

        def q(conn: sqlite3.Connection) -> list[BlobRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM blobs WHERE {where} LIMIT 10000",  # noqa: S608
                (before,),
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._read(q)


class SqliteQuotaLedger:
    """:class:`~tidings.server.media.quota.QuotaLedger` on the store's ``blobs`` and
    ``blob_usage`` tables."""

    def __init__(self, store: MediaBlobs) -> None:
        self._store = store

    async def add(self, account: str, blob_id: str, size: int, limit: int) -> bool:
        return await self._store.media_reserve(account, blob_id, size, limit)

    async def remove(self, blob_id: str) -> tuple[str, int] | None:
        return await self._store.media_release(blob_id)

    async def usage(self, account: str) -> int:
        return await self._store.media_usage(account)
