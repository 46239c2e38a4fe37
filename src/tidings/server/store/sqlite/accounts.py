"""Accounts, their devices and the devices' tokens."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence

from tidings.protocol import ErrorCode
from tidings.server.domain import AccountRecord, DeviceRecord, Refused
from tidings.server.store.sqlite.writer import Database


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
        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE username = ?", (username,)).fetchone():
                raise Refused(ErrorCode.USERNAME_TAKEN, f"username {username!r} is taken")
            conn.execute(
                "INSERT INTO accounts (id, username, created_at) VALUES (?, ?, ?)",
                (account_id, username, now),
            )
            conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES (?, 1, ?, ?, ?, ?)",
                (account_id, device_name, token_key, token_hash, now),
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
        def tx(conn: sqlite3.Connection) -> str:
            taken = conn.execute(
                "SELECT a.id, d.token_key, d.token_hash FROM accounts a LEFT JOIN devices d"
                " ON d.account_id = a.id AND d.device_id = 1 WHERE a.username = ?",
                (username,),
            ).fetchone()
            if taken is not None:
                existing, key, stored_hash = taken
                if key == token_key and hmac.compare_digest(bytes(stored_hash), token_hash):
                    return str(existing)  # the same sign-up again: its answer was lost
                raise Refused(ErrorCode.USERNAME_TAKEN, f"username {username!r} is taken")
            if conn.execute("SELECT 1 FROM devices WHERE token_key = ?", (token_key,)).fetchone():
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            conn.execute(
                "INSERT INTO accounts (id, username, created_at) VALUES (?, ?, ?)",
                (account_id, username, now),
            )
            conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES (?, 1, ?, ?, ?, ?)",
                (account_id, device_name, token_key, token_hash, now),
            )
            return account_id

        return await self._write(tx)

    async def device_by_token_key(self, token_key: str) -> DeviceRecord | None:
        def q(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                "SELECT d.account_id, a.username, d.device_id, d.name, d.token_hash"
                " FROM devices d JOIN accounts a ON a.id = d.account_id WHERE d.token_key = ?",
                (token_key,),
            ).fetchone()
            return None if row is None else DeviceRecord(*row)

        return await self._read(q)

    async def accounts_by_username(self, usernames: Sequence[str]) -> dict[str, AccountRecord]:
        wanted = list(dict.fromkeys(usernames))

        def q(conn: sqlite3.Connection) -> dict[str, AccountRecord]:
            found: dict[str, AccountRecord] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))  # only placeholders go into the SQL
                sql = f"SELECT id, username, created_at FROM accounts WHERE username IN ({marks})"  # noqa: S608
                for row in conn.execute(sql, chunk):
                    found[row[1]] = AccountRecord(*row)
            return found

        return await self._read(q)

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            if not conn.execute(
                "SELECT 1 FROM devices WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            ).fetchone():
                return False
            drop_device(conn, account_id, device_id)
            return True

        return await self._write(tx)


def drop_device(conn: sqlite3.Connection, account_id: str, device_id: int) -> None:
    """Delete the device with everything queued for it, its keys and any unfetched link."""
    key = (account_id, device_id)
    for table in ("pending", "device_queue", "one_time_keys", "device_keys", "devices"):
        conn.execute(f"DELETE FROM {table} WHERE account_id = ? AND device_id = ?", key)  # noqa: S608  # constant table names
    # An approved link not fetched yet must not hand out a token for the removed device.
    conn.execute("DELETE FROM provisioning WHERE account_id = ? AND device_id = ?", key)
