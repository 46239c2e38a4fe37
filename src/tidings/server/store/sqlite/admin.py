"""The operator's view of the SQLite store (:class:`~tidings.server.admin.records.AdminStore`):
accounts with their status, invites, counts. Runs on the store's own writer thread and readers,
so the admin API never opens a second writer on the database."""

from __future__ import annotations

import asyncio
import sqlite3

from tidings.server.admin.records import DeviceRow, InviteRow, Status, StoreStats, UserRow
from tidings.server.store.sqlite.accounts import drop_device
from tidings.server.store.sqlite.writer import Database


class SqliteAdmin:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def users(self) -> list[UserRow]:
        def q(conn: sqlite3.Connection) -> list[UserRow]:
            rows = conn.execute(
                "SELECT a.id, a.username, a.created_at,"
                " (SELECT count(*) FROM devices d WHERE d.account_id = a.id),"
                " coalesce(s.status, 'active')"
                " FROM accounts a LEFT JOIN account_status s ON s.account_id = a.id"
                " ORDER BY a.username"
            ).fetchall()
            return [UserRow(*row) for row in rows]

        return await self._db._read(q)

    async def account_id(self, username: str) -> str | None:
        def q(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT id FROM accounts WHERE username = ?", (username,)).fetchone()
            return None if row is None else str(row[0])

        return await self._db._read(q)

    async def devices(self, account_id: str) -> list[DeviceRow]:
        def q(conn: sqlite3.Connection) -> list[DeviceRow]:
            rows = conn.execute(
                "SELECT device_id, name, created_at FROM devices WHERE account_id = ?"
                " ORDER BY device_id",
                (account_id,),
            ).fetchall()
            return [DeviceRow(*row) for row in rows]

        return await self._db._read(q)

    async def set_status(self, account_id: str, status: Status, now: int) -> list[int]:
        """Mark the account; "removed" also drops every device. Returns the device ids the
        account had (their connections are to be closed)."""

        def tx(conn: sqlite3.Connection) -> list[int]:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT device_id FROM devices WHERE account_id = ?", (account_id,)
                )
            ]
            if status == "active":
                conn.execute("DELETE FROM account_status WHERE account_id = ?", (account_id,))
                return ids
            conn.execute(
                "INSERT INTO account_status (account_id, status, changed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id) DO UPDATE SET status = excluded.status,"
                " changed_at = excluded.changed_at",
                (account_id, status, now),
            )
            if status == "removed":
                for device_id in ids:
                    drop_device(conn, account_id, device_id)
            return ids

        return await self._db._write(tx)

    async def inactive_accounts(self) -> set[str]:
        def q(conn: sqlite3.Connection) -> set[str]:
            return {str(r[0]) for r in conn.execute("SELECT account_id FROM account_status")}

        return await self._db._read(q)

    async def create_invite(
        self,
        invite_id: str,
        token_hash: bytes,
        max_uses: int,
        expires_at: int | None,
        now: int,
        note: str,
        username: str | None,
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO invites (id, token_hash, max_uses, expires_at, created_at, note,"
                " username) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (invite_id, token_hash, max_uses, expires_at, now, note, username),
            )

        await self._db._write(tx)

    async def invites(self) -> list[InviteRow]:
        def q(conn: sqlite3.Connection) -> list[InviteRow]:
            rows = conn.execute(
                "SELECT id, max_uses, uses, expires_at, created_at, revoked_at, note, username"
                " FROM invites ORDER BY created_at, id"
            ).fetchall()
            return [InviteRow(*row) for row in rows]

        return await self._db._read(q)

    async def revoke_invite(self, invite_id: str, now: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, invite_id),
            )
            return cursor.rowcount == 1

        return await self._db._write(tx)

    async def claim_invite(self, token_hash: bytes, username: str, now: int) -> bool:
        """Count one use of the invite whose token hashes to ``token_hash``; False when there is
        none, or it is revoked, expired, used up or made out to another username."""

        def tx(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE invites SET uses = uses + 1 WHERE token_hash = ? AND revoked_at IS NULL"
                " AND uses < max_uses AND (expires_at IS NULL OR expires_at > ?)"
                " AND (username IS NULL OR username = ?)",
                (token_hash, now, username),
            )
            return cursor.rowcount == 1

        return await self._db._write(tx)

    async def refund_invite(self, token_hash: bytes) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE invites SET uses = uses - 1 WHERE token_hash = ? AND uses > 0",
                (token_hash,),
            )

        await self._db._write(tx)

    async def stats(self) -> StoreStats:
        def q(conn: sqlite3.Connection) -> StoreStats:
            def one(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])

            page_size = one("PRAGMA page_size")
            return StoreStats(
                accounts=one("SELECT count(*) FROM accounts"),
                disabled_accounts=one("SELECT count(*) FROM account_status"),
                devices=one("SELECT count(*) FROM devices"),
                conversations=one("SELECT count(*) FROM conversations"),
                groups=one("SELECT count(*) FROM conversations WHERE kind = 'group'"),
                envelopes=one("SELECT count(*) FROM envelopes"),
                pending=one("SELECT count(*) FROM pending")
                + one("SELECT count(*) FROM device_queue"),
                invites_active=one(
                    "SELECT count(*) FROM invites WHERE revoked_at IS NULL AND uses < max_uses"
                ),
                database_bytes=one("PRAGMA page_count") * page_size,
            )

        return await self._db._read(q)

    async def pending_depth(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pending) + (SELECT count(*) FROM device_queue)"
            ).fetchone()
            return int(row[0])

        return await self._db._read(q)

    async def ready(self, within: float) -> bool:
        """The store is open and its writer thread takes work: a no-op transaction within
        ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                await self._db._write(lambda conn: conn.execute("SELECT 1"))
                await self._db._read(lambda conn: conn.execute("SELECT 1").fetchone())
        except Exception:  # closed, writer dead, or stuck: not ready
            return False
        return True
