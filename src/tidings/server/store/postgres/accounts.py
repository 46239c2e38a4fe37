"""Accounts, their devices and the devices' tokens."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from tidings.protocol import ErrorCode
from tidings.server.domain import AccountRecord, DeviceRecord, Refused
from tidings.server.store.postgres.database import Connection, Database

_INSERT_ACCOUNT = "INSERT INTO accounts (id, username, created_at) VALUES ($1, $2, $3)"
_INSERT_DEVICE_1 = (
    "INSERT INTO devices (account_id, device_id, name, token_key, token_hash, created_at)"
    " VALUES ($1, 1, $2, $3, $4, $5)"
)


class Accounts(Database):
    async def create_account(
        self,
        *,
        account_id: str,
        username: str,
        device_name: str,
        token_key: str,
        token_hash: bytes,
        now: int,
    ) -> None:
        async def tx(conn: Connection) -> None:
            # A concurrent sign-up with this name fails on the unique constraint and runs
            # again: then it finds the name taken here.
            if await conn.fetchval("SELECT 1 FROM accounts WHERE username = $1", username):
                raise Refused(ErrorCode.USERNAME_TAKEN, f"username {username!r} is taken")
            await conn.execute(_INSERT_ACCOUNT, account_id, username, now)
            await conn.execute(
                _INSERT_DEVICE_1, account_id, device_name, token_key, token_hash, now
            )

        await self._write(tx)

    async def create_account_once(
        self,
        *,
        account_id: str,
        username: str,
        device_name: str,
        token_key: str,
        token_hash: bytes,
        now: int,
    ) -> str:
        async def tx(conn: Connection) -> str:
            taken = await conn.fetchrow(
                "SELECT a.id, d.token_key, d.token_hash FROM accounts a LEFT JOIN devices d"
                " ON d.account_id = a.id AND d.device_id = 1 WHERE a.username = $1",
                username,
            )
            if taken is not None:
                existing, key, stored_hash = taken
                if (
                    key == token_key
                    and stored_hash is not None
                    and hmac.compare_digest(bytes(stored_hash), token_hash)
                ):
                    return str(existing)  # the same sign-up again: its answer was lost
                raise Refused(ErrorCode.USERNAME_TAKEN, f"username {username!r} is taken")
            if await conn.fetchval("SELECT 1 FROM devices WHERE token_key = $1", token_key):
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            await conn.execute(_INSERT_ACCOUNT, account_id, username, now)
            await conn.execute(
                _INSERT_DEVICE_1, account_id, device_name, token_key, token_hash, now
            )
            return account_id

        return await self._write(tx)

    async def device_by_token_key(self, token_key: str) -> DeviceRecord | None:
        async def q(conn: Connection) -> DeviceRecord | None:
            row = await conn.fetchrow(
                "SELECT d.account_id, a.username, d.device_id, d.name, d.token_hash"
                " FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.token_key = $1",
                token_key,
            )
            return None if row is None else DeviceRecord(*row)

        return await self._read(q)

    async def accounts_by_username(self, usernames: Sequence[str]) -> dict[str, AccountRecord]:
        wanted = list(dict.fromkeys(usernames))

        async def q(conn: Connection) -> dict[str, AccountRecord]:
            rows = await conn.fetch(
                "SELECT id, username, created_at FROM accounts WHERE username = ANY($1::text[])",
                wanted,
            )
            return {row[1]: AccountRecord(*row) for row in rows}

        return await self._read(q)

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        async def tx(conn: Connection) -> bool:
            if not await conn.fetchval(
                "SELECT 1 FROM devices WHERE account_id = $1 AND device_id = $2 FOR UPDATE",
                account_id,
                device_id,
            ):
                return False
            await drop_device(conn, account_id, device_id)
            return True

        return await self._write(tx)


_DROP_DEVICE = [
    f"DELETE FROM {table} WHERE account_id = $1 AND device_id = $2"  # noqa: S608  # constant table names
    for table in ("pending", "device_queue", "one_time_keys", "device_keys", "devices")
    # An approved link not fetched yet must not hand out a token for the removed device.
] + ["DELETE FROM provisioning WHERE account_id = $1 AND device_id = $2"]


async def drop_device(conn: Connection, account_id: str, device_id: int) -> None:
    """Delete the device with everything queued for it, its keys and any unfetched link."""
    for sql in _DROP_DEVICE:
        await conn.execute(sql, account_id, device_id)
