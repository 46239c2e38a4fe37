"""The operator's view of the PostgreSQL store (:class:`~tidings.server.admin.records.AdminStore`):
accounts with their status, invites, counts, on the store's own pool."""

from __future__ import annotations

import asyncio

from tidings.server.admin.records import DeviceRow, InviteRow, Status, StoreStats, UserRow
from tidings.server.store.postgres.accounts import drop_device
from tidings.server.store.postgres.database import Connection, Database


class PostgresAdmin:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def users(self) -> list[UserRow]:
        async def q(conn: Connection) -> list[UserRow]:
            rows = await conn.fetch(
                "SELECT a.id, a.username, a.created_at,"
                " (SELECT count(*) FROM devices d WHERE d.account_id = a.id),"
                " coalesce(s.status, 'active')"
                " FROM accounts a LEFT JOIN account_status s ON s.account_id = a.id"
                " ORDER BY a.username"
            )
            return [UserRow(*row) for row in rows]

        return await self._db._read(q)

    async def account_id(self, username: str) -> str | None:
        async def q(conn: Connection) -> str | None:
            found = await conn.fetchval("SELECT id FROM accounts WHERE username = $1", username)
            return None if found is None else str(found)

        return await self._db._read(q)

    async def devices(self, account_id: str) -> list[DeviceRow]:
        async def q(conn: Connection) -> list[DeviceRow]:
            rows = await conn.fetch(
                "SELECT device_id, name, created_at FROM devices WHERE account_id = $1"
                " ORDER BY device_id",
                account_id,
            )
            return [DeviceRow(*row) for row in rows]

        return await self._db._read(q)

    async def set_status(self, account_id: str, status: Status, now: int) -> list[int]:
        """Mark the account; "removed" also drops every device. Returns the device ids the
        account had (their connections are to be closed)."""

        async def tx(conn: Connection) -> list[int]:
            await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            ids = [
                int(r[0])
                for r in await conn.fetch(
                    "SELECT device_id FROM devices WHERE account_id = $1", account_id
                )
            ]
            if status == "active":
                await conn.execute("DELETE FROM account_status WHERE account_id = $1", account_id)
                return ids
            await conn.execute(
                "INSERT INTO account_status (account_id, status, changed_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (account_id) DO UPDATE SET status = excluded.status,"
                " changed_at = excluded.changed_at",
                account_id,
                status,
                now,
            )
            if status == "removed":
                for device_id in ids:
                    await drop_device(conn, account_id, device_id)
            return ids

        return await self._db._write(tx)

    async def inactive_accounts(self) -> set[str]:
        async def q(conn: Connection) -> set[str]:
            return {str(r[0]) for r in await conn.fetch("SELECT account_id FROM account_status")}

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
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO invites (id, token_hash, max_uses, expires_at, created_at, note,"
                " username) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                invite_id,
                token_hash,
                max_uses,
                expires_at,
                now,
                note,
                username,
            )

        await self._db._write(tx)

    async def invites(self) -> list[InviteRow]:
        async def q(conn: Connection) -> list[InviteRow]:
            rows = await conn.fetch(
                "SELECT id, max_uses, uses, expires_at, created_at, revoked_at, note, username"
                " FROM invites ORDER BY created_at, id"
            )
            return [InviteRow(*row) for row in rows]

        return await self._db._read(q)

    async def revoke_invite(self, invite_id: str, now: int) -> bool:
        async def tx(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE invites SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                now,
                invite_id,
            )
            return status == "UPDATE 1"

        return await self._db._write(tx)

    async def claim_invite(self, token_hash: bytes, username: str, now: int) -> bool:
        """Count one use of the invite whose token hashes to ``token_hash``; False when there is
        none, or it is revoked, expired, used up or made out to another username."""

        async def tx(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE invites SET uses = uses + 1 WHERE token_hash = $1 AND revoked_at IS NULL"
                " AND uses < max_uses AND (expires_at IS NULL OR expires_at > $2)"
                " AND (username IS NULL OR username = $3)",
                token_hash,
                now,
                username,
            )
            return status == "UPDATE 1"

        return await self._db._write(tx)

    async def refund_invite(self, token_hash: bytes) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE invites SET uses = uses - 1 WHERE token_hash = $1 AND uses > 0",
                token_hash,
            )

        await self._db._write(tx)

    async def stats(self) -> StoreStats:
        async def q(conn: Connection) -> StoreStats:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM account_status),"
                " (SELECT count(*) FROM devices), (SELECT count(*) FROM conversations),"
                " (SELECT count(*) FROM conversations WHERE kind = 'group'),"
                " (SELECT count(*) FROM envelopes),"
                " (SELECT count(*) FROM pending) + (SELECT count(*) FROM device_queue),"
                " (SELECT count(*) FROM invites WHERE revoked_at IS NULL AND uses < max_uses),"
                " pg_database_size(current_database())"
            )
            assert row is not None
            return StoreStats(
                accounts=row[0],
                disabled_accounts=row[1],
                devices=row[2],
                conversations=row[3],
                groups=row[4],
                envelopes=row[5],
                pending=row[6],
                invites_active=row[7],
                database_bytes=row[8],
            )

        return await self._db._read(q)

    async def pending_depth(self) -> int:
        async def q(conn: Connection) -> int:
            found = await conn.fetchval(
                "SELECT (SELECT count(*) FROM pending) + (SELECT count(*) FROM device_queue)"
            )
            return int(found)

        return await self._db._read(q)

    async def ready(self, within: float) -> bool:
        """The store is open and the database answers a write and a read within ``within``
        seconds."""

        async def ping(conn: Connection) -> None:
            await conn.execute("SELECT 1")

        try:
            async with asyncio.timeout(within):
                await self._db._write(ping)
                await self._db._read(ping)
        except Exception:  # closed, unreachable or stuck: not ready
            return False
        return True
