"""The history vault's tables (component ``vault``): enrolments, sealed pages, tickets."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from tidings.protocol import ErrorCode
from tidings.server.domain import Refused
from tidings.server.store.postgres.database import Connection, Database
from tidings.server.store.postgres.media import lock_account
from tidings.server.vault.records import (
    MAX_PAGES_PER_ACCOUNT,
    RegisteredDevice,
    StoredPage,
    VaultKeyRecord,
)

_KEY_COLUMNS = "account_id, wrapped, params, verifier, failures, blocked_until, last_failure"


def _key(row: Iterable[Any]) -> VaultKeyRecord:  # records are untyped
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


async def _usage(conn: Connection, account_id: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*), coalesce(sum(size), 0) FROM vault_pages WHERE account_id = $1",
        account_id,
    )
    assert row is not None
    return int(row[0]), int(row[1])


class Vault(Database):
    async def vault_account_id(self, username: str) -> str | None:
        async def q(conn: Connection) -> str | None:
            found = await conn.fetchval("SELECT id FROM accounts WHERE username = $1", username)
            return None if found is None else str(found)

        return await self._read(q)

    async def vault_key(self, account_id: str) -> VaultKeyRecord | None:
        async def q(conn: Connection) -> VaultKeyRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM vault_keys WHERE account_id = $1",  # noqa: S608  # constant columns
                account_id,
            )
            return None if row is None else _key(row)

        return await self._read(q)

    async def vault_enrol(
        self, account_id: str, wrapped: bytes, params: bytes, verifier: bytes, now: int
    ) -> bool:
        async def tx(conn: Connection) -> bool:
            row = await conn.fetchrow(
                "SELECT wrapped, verifier FROM vault_keys WHERE account_id = $1", account_id
            )
            if row is not None:
                return bytes(row[0]) == wrapped and hmac.compare_digest(bytes(row[1]), verifier)
            await conn.execute(
                "INSERT INTO vault_keys (account_id, wrapped, params, verifier, updated_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                account_id,
                wrapped,
                params,
                verifier,
                now,
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
        async def tx(conn: Connection) -> bool:
            found = await conn.fetchval(
                "SELECT verifier FROM vault_keys WHERE account_id = $1 FOR UPDATE", account_id
            )
            if found is None or not hmac.compare_digest(bytes(found), old_verifier):
                return False
            await conn.execute(
                "UPDATE vault_keys SET wrapped = $1, params = $2, verifier = $3, updated_at = $4,"
                " failures = 0, blocked_until = 0 WHERE account_id = $5",
                wrapped,
                params,
                verifier,
                now,
                account_id,
            )
            return True

        return await self._write(tx)

    async def vault_failure(
        self, account_id: str, failures: int, blocked_until: int, now: int
    ) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE vault_keys SET failures = $1, blocked_until = $2, last_failure = $3"
                " WHERE account_id = $4",
                failures,
                blocked_until,
                now,
                account_id,
            )

        await self._write(tx)

    async def vault_success(self, account_id: str) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE vault_keys SET failures = 0, blocked_until = 0 WHERE account_id = $1",
                account_id,
            )

        await self._write(tx)

    async def vault_put_pages(
        self, account_id: str, pages: Sequence[StoredPage], quota: int, now: int
    ) -> tuple[int, int]:
        async def tx(conn: Connection) -> tuple[int, int]:
            await lock_account(conn, account_id)  # uploads of one account take turns
            for page in pages:
                row = await conn.fetchrow(
                    "SELECT generation, sealed FROM vault_pages WHERE account_id = $1"
                    " AND page_id = $2",
                    account_id,
                    page.page_id,
                )
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
                await conn.execute(
                    "INSERT INTO vault_pages (account_id, page_id, generation, sealed, size,"
                    " updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, page_id)"
                    " DO UPDATE SET generation = excluded.generation, sealed = excluded.sealed,"
                    " size = excluded.size, updated_at = excluded.updated_at",
                    account_id,
                    page.page_id,
                    page.generation,
                    page.sealed,
                    len(page.sealed),
                    now,
                )
            count, size = await _usage(conn, account_id)
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
        async def tx(conn: Connection) -> bool:
            found = await conn.execute("DELETE FROM vault_keys WHERE account_id = $1", account_id)
            await conn.execute("DELETE FROM vault_pages WHERE account_id = $1", account_id)
            await conn.execute("DELETE FROM vault_tickets WHERE account_id = $1", account_id)
            return found != "DELETE 0"

        return await self._write(tx)

    async def vault_usage(self, account_id: str) -> tuple[int, int]:
        return await self._read(lambda conn: _usage(conn, account_id))

    async def vault_list(self, account_id: str) -> list[tuple[str, int, int]]:
        async def q(conn: Connection) -> list[tuple[str, int, int]]:
            rows = await conn.fetch(
                "SELECT page_id, generation, size FROM vault_pages WHERE account_id = $1"
                " ORDER BY page_id",
                account_id,
            )
            return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

        return await self._read(q)

    async def vault_fetch(self, account_id: str, page_ids: Sequence[str]) -> list[StoredPage]:
        wanted = list(dict.fromkeys(page_ids))

        async def q(conn: Connection) -> list[StoredPage]:
            rows = await conn.fetch(
                "SELECT page_id, generation, sealed FROM vault_pages WHERE account_id = $1"
                " AND page_id = ANY($2::text[])",
                account_id,
                wanted,
            )
            found = {str(r[0]): StoredPage(str(r[0]), int(r[1]), bytes(r[2])) for r in rows}
            return [found[page_id] for page_id in wanted if page_id in found]

        return await self._read(q)

    async def vault_ticket(self, ticket_hash: bytes, account_id: str, expires_at: int) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "DELETE FROM vault_tickets WHERE expires_at < $1", expires_at - 86_400_000
            )
            await conn.execute(
                "INSERT INTO vault_tickets (ticket_hash, account_id, expires_at)"
                " VALUES ($1, $2, $3)",
                ticket_hash,
                account_id,
                expires_at,
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
        async def tx(conn: Connection) -> RegisteredDevice:
            # The ticket is locked on its own and the rest read after: a ticket that a
            # concurrent registration used while this waited is read again at its new version,
            # but rows joined to it would still be the ones seen before (no device yet).
            row = await conn.fetchrow(
                "SELECT account_id, expires_at, device_id, token_key FROM vault_tickets"
                " WHERE ticket_hash = $1 FOR UPDATE",
                ticket_hash,
            )
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such recovery ticket")
            account_id, expires_at, device_id, used_key = row
            username = await conn.fetchval(
                "SELECT username FROM accounts WHERE id = $1", account_id
            )
            if username is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such recovery ticket")
            if device_id is not None:
                used_hash = await conn.fetchval(
                    "SELECT token_hash FROM devices WHERE account_id = $1 AND device_id = $2",
                    account_id,
                    device_id,
                )
                if (
                    used_key == token_key
                    and used_hash is not None
                    and hmac.compare_digest(bytes(used_hash), token_hash)
                ):  # the same registration again (the same whole token): its answer was lost
                    return RegisteredDevice(account_id, username, int(device_id))
                raise Refused(ErrorCode.CONFLICT, "the recovery ticket was used")
            if expires_at <= now:
                raise Refused(ErrorCode.EXPIRED, "the recovery ticket expired")
            if await conn.fetchval("SELECT 1 FROM devices WHERE token_key = $1", token_key):
                raise Refused(ErrorCode.CONFLICT, "choose another token")
            counted = await conn.fetchrow(
                "SELECT count(*), coalesce(max(device_id), 0) FROM devices WHERE account_id = $1",
                account_id,
            )
            assert counted is not None
            count, highest = counted
            if count >= max_devices:
                raise Refused(ErrorCode.FORBIDDEN, f"an account has at most {max_devices} devices")
            new_id = int(highest) + 1  # a concurrent new device: the primary key, a rerun
            await conn.execute(
                "INSERT INTO devices (account_id, device_id, name, token_key, token_hash,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                account_id,
                new_id,
                device_name,
                token_key,
                token_hash,
                now,
            )
            await conn.execute(
                "UPDATE vault_tickets SET device_id = $1, token_key = $2 WHERE ticket_hash = $3",
                new_id,
                token_key,
                ticket_hash,
            )
            return RegisteredDevice(account_id, username, new_id)

        return await self._write(tx)
