"""The history vault's tables (component ``vault``): enrolments, sealed pages, tickets."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence
from typing import Any

from tidings.protocol import ErrorCode
from tidings.server.domain import Refused
from tidings.server.store.sqlite.writer import Database
from tidings.server.vault.records import (
    MAX_PAGES_PER_ACCOUNT,
    RegisteredDevice,
    StoredPage,
    VaultKeyRecord,
)

_KEY_COLUMNS = "account_id, wrapped, params, verifier, failures, blocked_until, last_failure"


def _key(row: tuple[Any, ...]) -> VaultKeyRecord:  # sqlite3 rows are untyped
    account_id, wrapped, params, verifier, failures, blocked_until, last_failure = row
    return VaultKeyRecord(
        str(account_id),
        bytes(wrapped),
        bytes(params),
        bytes(verifier),
        int(failures),
        int(blocked_until),
        int(last_failure),
    )


def _usage(conn: sqlite3.Connection, account_id: str) -> tuple[int, int]:
    count, size = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM vault_pages WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    return int(count), int(size)


class Vault(Database):
    async def vault_account_id(self, username: str) -> str | None:
        def q(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT id FROM accounts WHERE username = ?", (username,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(q)

    async def vault_key(self, account_id: str) -> VaultKeyRecord | None:
        def q(conn: sqlite3.Connection) -> VaultKeyRecord | None:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM vault_keys WHERE account_id = ?",  # noqa: S608  # constant columns
                (account_id,),
            ).fetchone()
            return None if row is None else _key(row)

        return await self._read(q)

    async def vault_enrol(
        self, account_id: str, wrapped: bytes, params: bytes, verifier: bytes, now: int
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT wrapped, verifier FROM vault_keys WHERE account_id = ?", (account_id,)
            ).fetchone()
            if row is not None:
                return bytes(row[0]) == wrapped and hmac.compare_digest(bytes(row[1]), verifier)
            conn.execute(
                "INSERT INTO vault_keys (account_id, wrapped, params, verifier, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (account_id, wrapped, params, verifier, now),
            )
            return True

        return await self._write(tx)

    async def vault_replace_key(
        self,
        account_id: str,
        old_verifier: bytes,
        wrapped: bytes,
        params: bytes,
        verifier: bytes,
        now: int,
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT verifier FROM vault_keys WHERE account_id = ?", (account_id,)
            ).fetchone()
            if row is None or not hmac.compare_digest(bytes(row[0]), old_verifier):
                return False
            conn.execute(
                "UPDATE vault_keys SET wrapped = ?, params = ?, verifier = ?, updated_at = ?,"
                " failures = 0, blocked_until = 0 WHERE account_id = ?",
                (wrapped, params, verifier, now, account_id),
            )
            return True

        return await self._write(tx)

    async def vault_failure(
        self, account_id: str, failures: int, blocked_until: int, now: int
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE vault_keys SET failures = ?, blocked_until = ?, last_failure = ?"
                " WHERE account_id = ?",
                (failures, blocked_until, now, account_id),
            )

        await self._write(tx)

    async def vault_success(self, account_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE vault_keys SET failures = 0, blocked_until = 0 WHERE account_id = ?",
                (account_id,),
            )

        await self._write(tx)

    async def vault_put_pages(
        self, account_id: str, pages: Sequence[StoredPage], quota: int, now: int
    ) -> tuple[int, int]:
        def tx(conn: sqlite3.Connection) -> tuple[int, int]:
            for page in pages:
                row = conn.execute(
                    "SELECT generation, sealed FROM vault_pages WHERE account_id = ?"
                    " AND page_id = ?",
                    (account_id, page.page_id),
                ).fetchone()
                if row is not None:
                    if row[0] > page.generation or (
                        row[0] == page.generation and bytes(row[1]) != page.sealed
                    ):
                        raise Refused(
                            ErrorCode.CONFLICT,
                            f"page {page.page_id!r} is stored at generation {row[0]}",
                        )
                    if row[0] == page.generation:
                        continue  # the same upload again
                conn.execute(
                    "INSERT OR REPLACE INTO vault_pages (account_id, page_id, generation,"
                    " sealed, size, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (account_id, page.page_id, page.generation, page.sealed, len(page.sealed), now),
                )
            count, size = _usage(conn, account_id)
            if count > MAX_PAGES_PER_ACCOUNT:
                raise Refused(
                    ErrorCode.QUOTA_EXCEEDED,
                    f"the vault holds at most {MAX_PAGES_PER_ACCOUNT} pages",
                )
            if quota and size > quota:
                raise Refused(ErrorCode.QUOTA_EXCEEDED, f"the vault holds at most {quota} bytes")
            return count, size

        return await self._write(tx)

    async def vault_delete(self, account_id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            found = conn.execute("DELETE FROM vault_keys WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM vault_pages WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM vault_tickets WHERE account_id = ?", (account_id,))
            return found.rowcount > 0

        return await self._write(tx)

    async def vault_usage(self, account_id: str) -> tuple[int, int]:
        return await self._read(lambda conn: _usage(conn, account_id))

    async def vault_list(self, account_id: str) -> list[tuple[str, int, int]]:
        def q(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
            return [
                (str(r[0]), int(r[1]), int(r[2]))
                for r in conn.execute(
                    "SELECT page_id, generation, size FROM vault_pages WHERE account_id = ?"
                    " ORDER BY page_id",
                    (account_id,),
                )
            ]

        return await self._read(q)

    async def vault_fetch(self, account_id: str, page_ids: Sequence[str]) -> list[StoredPage]:
        def q(conn: sqlite3.Connection) -> list[StoredPage]:
            found = []
            for page_id in dict.fromkeys(page_ids):
                row = conn.execute(
                    "SELECT generation, sealed FROM vault_pages WHERE account_id = ?"
                    " AND page_id = ?",
                    (account_id, page_id),
                ).fetchone()
                if row is not None:
                    found.append(StoredPage(page_id, int(row[0]), bytes(row[1])))
            return found

        return await self._read(q)

    async def vault_ticket(self, ticket_hash: bytes, account_id: str, expires_at: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM vault_tickets WHERE expires_at < ?", (expires_at - 86_400_000,)
            )
            conn.execute(
                "INSERT INTO vault_tickets (ticket_hash, account_id, expires_at) VALUES (?, ?, ?)",
                (ticket_hash, account_id, expires_at),
            )

        await self._write(tx)

    async def vault_register(
        self,
        ticket_hash: bytes,
        token_key: str,
        token_hash: bytes,
        device_name: str,
        now: int,
        max_devices: int,
    ) -> RegisteredDevice:
        def tx(conn: sqlite3.Connection) -> RegisteredDevice:
            row = conn.execute(
                "SELECT t.account_id, t.expires_at, t.device_id, t.token_key, a.username,"
                " d.token_hash FROM vault_tickets t JOIN accounts a ON a.id = t.account_id"
                " LEFT JOIN devices d ON d.account_id = t.account_id"
                " AND d.device_id = t.device_id WHERE t.ticket_hash = ?",
                (ticket_hash,),
            ).fetchone()
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such recovery ticket")
            account_id, expires_at, device_id, used_key, username, used_hash = row
            if device_id is not None:
                if (
                    used_key == token_key
                    and used_hash is not None
                    and hmac.compare_digest(bytes(used_hash), token_hash)
                ):  # the same registration again (the same whole token): its answer was lost
                    return RegisteredDevice(account_id, username, int(device_id))
                raise Refused(ErrorCode.CONFLICT, "the recovery ticket was used")
            if expires_at <= now:
                raise Refused(ErrorCode.EXPIRED, "the recovery ticket expired")
            if conn.execute("SELECT 1 FROM devices WHERE token_key = ?", (token_key,)).fetchone():
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            count, highest = conn.execute(
                "SELECT count(*), coalesce(max(device_id), 0) FROM devices WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            if count >= max_devices:
                raise Refused(ErrorCode.FORBIDDEN, f"an account has at most {max_devices} devices")
            new_id = int(highest) + 1
            conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, new_id, device_name, token_key, token_hash, now),
            )
            conn.execute(
                "UPDATE vault_tickets SET device_id = ?, token_key = ? WHERE ticket_hash = ?",
                (new_id, token_key, ticket_hash),
            )
            return RegisteredDevice(account_id, username, new_id)

        return await self._write(tx)
