"""Attachment blobs: the ``blobs`` table and the per-account quota ledger (``blob_usage``),
schema component ``media``.

:class:`PostgresQuotaLedger` is the :class:`tidings.server.media.quota.QuotaLedger` on these
tables: ``add`` checks the limit and records the blob in one transaction holding the account's
advisory lock, so concurrent uploads on any node cannot overshoot a quota; ``remove`` gives the
bytes back exactly once (the blob's row is deleted by the one that returns it).
"""

from __future__ import annotations

from collections.abc import Iterable

from tidings.server.media.service import BlobRecord
from tidings.server.store.postgres.database import Connection, Database

_COLUMNS = "id, owner, size, kind, parts, upload_id, created_at, completed_at"


def _record(row: Iterable[object]) -> BlobRecord:
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


async def lock_account(conn: Connection, account: str) -> None:
    """Hold ``account``'s advisory lock until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", account)


class MediaBlobs(Database):
    # ------------------------------------------------------------------ the quota ledger

    async def media_reserve(self, account: str, blob_id: str, size: int, limit: int) -> bool:
        async def tx(conn: Connection) -> bool:
            await lock_account(conn, account)
            if await conn.fetchval("SELECT 1 FROM blobs WHERE id = $1", blob_id):
                return True
            used = await conn.fetchval(
                "SELECT bytes FROM blob_usage WHERE account_id = $1", account
            )
            if (used or 0) + size > limit:
                return False
            await conn.execute(
                "INSERT INTO blobs (id, owner, size, created_at) VALUES ($1, $2, $3,"
                " (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                blob_id,
                account,
                size,
            )
            await conn.execute(
                "INSERT INTO blob_usage VALUES ($1, $2) ON CONFLICT (account_id)"
                " DO UPDATE SET bytes = blob_usage.bytes + excluded.bytes",
                account,
                size,
            )
            return True

        return await self._write(tx)

    async def media_release(self, blob_id: str) -> tuple[str, int] | None:
        async def tx(conn: Connection) -> tuple[str, int] | None:
            row = await conn.fetchrow(
                "DELETE FROM blobs WHERE id = $1 RETURNING owner, size", blob_id
            )
            if row is None:
                return None
            owner, size = str(row[0]), int(row[1])
            await conn.execute(
                "UPDATE blob_usage SET bytes = greatest(0, bytes - $1) WHERE account_id = $2",
                size,
                owner,
            )
            await conn.execute("DELETE FROM blob_usage WHERE account_id = $1 AND bytes = 0", owner)
            return owner, size

        return await self._write(tx)

    async def media_usage(self, account: str) -> int:
        async def q(conn: Connection) -> int:
            found = await conn.fetchval(
                "SELECT bytes FROM blob_usage WHERE account_id = $1", account
            )
            return 0 if found is None else int(found)

        return await self._read(q)

    # ------------------------------------------------------------------ BlobRecords

    async def blob_started(
        self, blob_id: str, *, kind: str, parts: int, upload_id: str | None, now: int
    ) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE blobs SET kind = $1, parts = $2, upload_id = $3, created_at = $4"
                " WHERE id = $5",
                kind,
                parts,
                upload_id,
                now,
                blob_id,
            )

        await self._write(tx)

    async def blob_completed(self, blob_id: str, now: int) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE blobs SET completed_at = $1, upload_id = NULL"
                " WHERE id = $2 AND completed_at IS NULL",
                now,
                blob_id,
            )

        await self._write(tx)

    async def blob(self, blob_id: str) -> BlobRecord | None:
        async def q(conn: Connection) -> BlobRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM blobs WHERE id = $1",  # noqa: S608 - constant columns
                blob_id,
            )
            return None if row is None else _record(row)

        return await self._read(q)

    async def blobs_older_than(self, before: int, *, completed: bool) -> list[BlobRecord]:
        """Open uploads created (or completed blobs completed) before ``before`` ms."""
        where = (
            "completed_at IS NOT NULL AND completed_at < $1"
            if completed
            else "completed_at IS NULL AND created_at < $1"
        )

        async def q(conn: Connection) -> list[BlobRecord]:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM blobs WHERE {where} LIMIT 10000",  # noqa: S608
                before,
            )
            return [_record(r) for r in rows]

        return await self._read(q)


class PostgresQuotaLedger:
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
