"""Profiles, block lists and privacy settings (the "social" component's tables), and the
account's device list."""

from __future__ import annotations

from collections.abc import Iterable

from tidings.protocol import ErrorCode
from tidings.protocol.social import MAX_BLOCKED, BlockedAccount, DeviceInfo, Profile
from tidings.server.domain import Refused
from tidings.server.domain.records import PrivacyFacts
from tidings.server.store.postgres.database import Connection, Database


class Social(Database):
    # ------------------------------------------------------------------ profiles

    async def put_profile(self, account_id: str, version: int, blob: bytes, now: int) -> Profile:
        async def tx(conn: Connection) -> Profile:
            # Only a higher version replaces the stored one, in one statement (no lost update).
            stored = await conn.fetchval(
                "INSERT INTO profiles (account_id, version, blob, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE"
                " SET version = excluded.version, blob = excluded.blob,"
                " updated_at = excluded.updated_at WHERE profiles.version < excluded.version"
                " RETURNING version",
                account_id,
                version,
                blob,
                now,
            )
            if stored is None:
                current = await conn.fetchval(
                    "SELECT version FROM profiles WHERE account_id = $1", account_id
                )
                raise Refused(
                    ErrorCode.CONFLICT, f"the stored profile has version {current}: go above it"
                )
            return Profile(account_id, version, blob, now)

        return await self._write(tx)

    async def profile(self, account_id: str) -> Profile | None:
        async def q(conn: Connection) -> Profile | None:
            row = await conn.fetchrow(
                "SELECT account_id, version, blob, updated_at FROM profiles WHERE account_id = $1",
                account_id,
            )
            return None if row is None else Profile(row[0], row[1], bytes(row[2]), row[3])

        return await self._read(q)

    # ------------------------------------------------------------------ blocking

    async def block(self, blocker: str, blocked: str, now: int) -> None:
        async def tx(conn: Connection) -> None:
            if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", blocked) is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such account")
            # The blocker's row, locked: its blocks are counted and added one at a time.
            await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", blocker)
            count = await conn.fetchval("SELECT count(*) FROM blocks WHERE blocker = $1", blocker)
            if count >= MAX_BLOCKED:
                raise Refused(ErrorCode.FORBIDDEN, f"at most {MAX_BLOCKED} blocked accounts")
            await conn.execute(
                "INSERT INTO blocks (blocker, blocked, blocked_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                blocker,
                blocked,
                now,
            )

        await self._write(tx)

    async def unblock(self, blocker: str, blocked: str) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2", blocker, blocked
            )

        await self._write(tx)

    async def blocked_accounts(self, blocker: str) -> list[BlockedAccount]:
        async def q(conn: Connection) -> list[BlockedAccount]:
            rows = await conn.fetch(
                "SELECT b.blocked, COALESCE(a.username, ''), b.blocked_at FROM blocks b"
                " LEFT JOIN accounts a ON a.id = b.blocked WHERE b.blocker = $1"
                " ORDER BY b.blocked_at, b.blocked",
                blocker,
            )
            return [BlockedAccount(*row) for row in rows]

        return await self._read(q)

    # ------------------------------------------------------------------ privacy

    async def privacy(self, account_id: str) -> tuple[bool, bool]:
        """(read receipts, typing indicators) of the account."""

        async def q(conn: Connection) -> tuple[bool, bool]:
            row = await conn.fetchrow(
                "SELECT read_receipts, typing FROM privacy_settings WHERE account_id = $1",
                account_id,
            )
            return (True, True) if row is None else (bool(row[0]), bool(row[1]))

        return await self._read(q)

    async def set_privacy(
        self, account_id: str, read_receipts: bool | None, typing: bool | None
    ) -> None:
        async def tx(conn: Connection) -> None:
            # A NULL leaves the setting as it is (or at its default, 1, in a new row).
            await conn.execute(
                "INSERT INTO privacy_settings (account_id, read_receipts, typing)"
                " VALUES ($1, COALESCE($2::integer, 1), COALESCE($3::integer, 1))"
                " ON CONFLICT (account_id) DO UPDATE"
                " SET read_receipts = COALESCE($2::integer, privacy_settings.read_receipts),"
                " typing = COALESCE($3::integer, privacy_settings.typing)",
                account_id,
                None if read_receipts is None else int(read_receipts),
                None if typing is None else int(typing),
            )

        await self._write(tx)

    async def privacy_facts(
        self, viewer: str, accounts: Iterable[str], convs: Iterable[str] = ()
    ) -> PrivacyFacts:
        others = sorted(set(accounts) - {viewer})
        everyone = [viewer, *others]
        conv_ids = sorted(set(convs))

        facts: dict[str, set[str]] = {
            "blocking": set(),
            "blocked": set(),
            "receipts_off": set(),
            "typing_off": set(),
            "direct": set(),
        }
        for fact, subject in await self._fetch(_PRIVACY_FACTS, viewer, others, everyone, conv_ids):
            facts[fact].add(str(subject))
        return PrivacyFacts(
            blocking_viewer=frozenset(facts["blocking"]),
            blocked_by_viewer=frozenset(facts["blocked"]),
            receipts_off=frozenset(facts["receipts_off"]),
            typing_off=frozenset(facts["typing_off"]),
            direct=frozenset(facts["direct"]),
        )

    # ------------------------------------------------------------------ devices

    async def device_list(self, account_id: str) -> list[DeviceInfo]:
        async def q(conn: Connection) -> list[DeviceInfo]:
            rows = await conn.fetch(
                "SELECT device_id, name, created_at, NULLIF(welcomed_at, 0) FROM devices"
                " WHERE account_id = $1 ORDER BY device_id",
                account_id,
            )
            return [DeviceInfo(*row) for row in rows]

        return await self._read(q)


#: What :meth:`Social.privacy_facts` reads, in one statement (one snapshot): (fact, subject).
_PRIVACY_FACTS = (
    "SELECT 'blocking', blocker::text FROM blocks WHERE blocked = $1 AND blocker = ANY($2::text[])"
    " UNION ALL SELECT 'blocked', blocked::text FROM blocks"
    " WHERE blocker = $1 AND blocked = ANY($2::text[])"
    " UNION ALL SELECT 'receipts_off', account_id::text FROM privacy_settings"
    " WHERE account_id = ANY($3::text[]) AND read_receipts = 0"
    " UNION ALL SELECT 'typing_off', account_id::text FROM privacy_settings"
    " WHERE account_id = ANY($3::text[]) AND typing = 0"
    " UNION ALL SELECT 'direct', id::text FROM conversations"
    " WHERE kind = 'direct' AND id = ANY($4::text[])"
)
