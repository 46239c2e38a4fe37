"""Profiles, block lists and privacy settings (the "social" component's tables), and the
account's device list."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable

from tidings.protocol import ErrorCode
from tidings.protocol.social import MAX_BLOCKED, BlockedAccount, DeviceInfo, Profile
from tidings.server.domain import Refused
from tidings.server.domain.records import PrivacyFacts
from tidings.server.store.sqlite.writer import Database


def _marks(n: int) -> str:
    return ",".join("?" * n)


#: Most conversation kinds :meth:`Social.privacy_facts` keeps (a conversation's kind never
#: changes and its id is never reused, so they need no invalidation).
_MAX_KINDS = 100_000


class Social(Database):
    #: Accounts in any block (either side) or with privacy settings, read once and grown by
    #: :meth:`block` and :meth:`set_privacy` before they write (never shrunk: a superset only
    #: costs a read); None: not read yet. privacy_facts about accounts outside it, in
    #: conversations of known kind, needs no read: most receipts (a group's acks) hit it.
    _social_accounts: set[str] | None = None
    #: accounts added since the store opened (kept apart so that a concurrent first read
    #: cannot lose them)
    _social_added: frozenset[str] = frozenset()
    #: conversation id → kind, for the conversations privacy_facts was asked about
    _conv_kinds: dict[str, str] | None = None
    #: held by the privacy_facts read that fills the two above for the first time
    _cold_read: asyncio.Lock | None = None

    def _note_social(self, *accounts: str) -> None:
        self._social_added = self._social_added | set(accounts)
        if self._social_accounts is not None:
            self._social_accounts.update(accounts)

    # ------------------------------------------------------------------ profiles

    async def put_profile(self, account_id: str, version: int, blob: bytes, now: int) -> Profile:
        def tx(conn: sqlite3.Connection) -> Profile:
            row = conn.execute(
                "SELECT version FROM profiles WHERE account_id = ?", (account_id,)
            ).fetchone()
            if row is not None and row[0] >= version:
                raise Refused(
                    ErrorCode.CONFLICT, f"the stored profile has version {row[0]}: go above it"
                )
            conn.execute(
                "INSERT INTO profiles VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET version = excluded.version, blob = excluded.blob,"
                " updated_at = excluded.updated_at",
                (account_id, version, blob, now),
            )
            return Profile(account_id, version, blob, now)

        return await self._write(tx)

    async def profile(self, account_id: str) -> Profile | None:
        def q(conn: sqlite3.Connection) -> Profile | None:
            row = conn.execute(
                "SELECT account_id, version, blob, updated_at FROM profiles WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            return None if row is None else Profile(*row)

        return await self._read(q)

    # ------------------------------------------------------------------ blocking

    async def block(self, blocker: str, blocked: str, now: int) -> None:
        self._note_social(blocker, blocked)

        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (blocked,)).fetchone() is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such account")
            (count,) = conn.execute(
                "SELECT count(*) FROM blocks WHERE blocker = ?", (blocker,)
            ).fetchone()
            if count >= MAX_BLOCKED:
                raise Refused(ErrorCode.FORBIDDEN, f"at most {MAX_BLOCKED} blocked accounts")
            conn.execute("INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)", (blocker, blocked, now))

        await self._write(tx)

    async def unblock(self, blocker: str, blocked: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked))

        await self._write(tx)

    async def blocked_accounts(self, blocker: str) -> list[BlockedAccount]:
        def q(conn: sqlite3.Connection) -> list[BlockedAccount]:
            rows = conn.execute(
                "SELECT b.blocked, COALESCE(a.username, ''), b.blocked_at FROM blocks b"
                " LEFT JOIN accounts a ON a.id = b.blocked WHERE b.blocker = ?"
                " ORDER BY b.blocked_at, b.blocked",
                (blocker,),
            )
            return [BlockedAccount(*row) for row in rows]

        return await self._read(q)

    # ------------------------------------------------------------------ privacy

    async def privacy(self, account_id: str) -> tuple[bool, bool]:
        """(read receipts, typing indicators) of the account."""

        def q(conn: sqlite3.Connection) -> tuple[bool, bool]:
            row = conn.execute(
                "SELECT read_receipts, typing FROM privacy_settings WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            return (True, True) if row is None else (bool(row[0]), bool(row[1]))

        return await self._read(q)

    async def set_privacy(
        self, account_id: str, read_receipts: bool | None, typing: bool | None
    ) -> None:
        self._note_social(account_id)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO privacy_settings (account_id) VALUES (?)", (account_id,)
            )
            if read_receipts is not None:
                conn.execute(
                    "UPDATE privacy_settings SET read_receipts = ? WHERE account_id = ?",
                    (read_receipts, account_id),
                )
            if typing is not None:
                conn.execute(
                    "UPDATE privacy_settings SET typing = ? WHERE account_id = ?",
                    (typing, account_id),
                )

        await self._write(tx)

    async def privacy_facts(
        self, viewer: str, accounts: Iterable[str], convs: Iterable[str] = ()
    ) -> PrivacyFacts:
        others = sorted(set(accounts) - {viewer})
        everyone = [viewer, *others]
        conv_ids = sorted(set(convs))
        known = self._known_facts(everyone, conv_ids)
        if known is not None:
            return known
        kinds = self._conv_kinds
        if (
            self._social_accounts is None
            or kinds is None
            or not all(conv in kinds for conv in conv_ids)
        ):
            # The first questions about a conversation (a big group's first receipts, all at
            # once): one of them reads what the others can then answer from memory.
            if self._cold_read is None:
                self._cold_read = asyncio.Lock()
            async with self._cold_read:
                known = self._known_facts(everyone, conv_ids)
                if known is not None:
                    return known
                return await self._read_facts(viewer, others, everyone, conv_ids)
        return await self._read_facts(viewer, others, everyone, conv_ids)

    def _known_facts(self, everyone: list[str], conv_ids: list[str]) -> PrivacyFacts | None:
        """The facts without a read, when every account is outside any block and privacy
        setting and every conversation's kind is known; None otherwise."""
        social, kinds = self._social_accounts, self._conv_kinds
        if (
            social is not None
            and kinds is not None
            and not any(account in social for account in everyone)
            and all(conv in kinds for conv in conv_ids)
        ):
            none: frozenset[str] = frozenset()
            direct_ids = frozenset(c for c in conv_ids if kinds[c] == "direct")
            return PrivacyFacts(none, none, none, none, direct_ids)
        return None

    async def _read_facts(
        self, viewer: str, others: list[str], everyone: list[str], conv_ids: list[str]
    ) -> PrivacyFacts:
        load_social = self._social_accounts is None

        def q(conn: sqlite3.Connection) -> tuple[PrivacyFacts, dict[str, str], set[str] | None]:
            blocking = {
                str(r[0])
                for r in conn.execute(
                    "SELECT blocker FROM blocks WHERE blocked = ?"  # noqa: S608
                    f" AND blocker IN ({_marks(len(others))})",
                    (viewer, *others),
                )
            }
            blocked = {
                str(r[0])
                for r in conn.execute(
                    "SELECT blocked FROM blocks WHERE blocker = ?"  # noqa: S608
                    f" AND blocked IN ({_marks(len(others))})",
                    (viewer, *others),
                )
            }
            receipts_off: set[str] = set()
            typing_off: set[str] = set()
            for account, receipts, typing in conn.execute(
                "SELECT account_id, read_receipts, typing FROM privacy_settings"  # noqa: S608
                f" WHERE account_id IN ({_marks(len(everyone))})",
                everyone,
            ):
                if not receipts:
                    receipts_off.add(str(account))
                if not typing:
                    typing_off.add(str(account))
            found = {
                str(r[0]): str(r[1])
                for r in conn.execute(
                    "SELECT id, kind FROM conversations"  # noqa: S608
                    f" WHERE id IN ({_marks(len(conv_ids))})",
                    conv_ids,
                )
            }
            direct = {conv for conv, kind in found.items() if kind == "direct"}
            loaded = (
                {
                    str(r[0])
                    for r in conn.execute(
                        "SELECT blocker FROM blocks UNION SELECT blocked FROM blocks"
                        " UNION SELECT account_id FROM privacy_settings"
                    )
                }
                if load_social
                else None
            )
            facts = PrivacyFacts(
                frozenset(blocking),
                frozenset(blocked),
                frozenset(receipts_off),
                frozenset(typing_off),
                frozenset(direct),
            )
            return facts, found, loaded

        facts, found, loaded = await self._read(q)
        if loaded is not None and self._social_accounts is None:
            self._social_accounts = loaded | self._social_added
        if self._conv_kinds is None or len(self._conv_kinds) + len(found) > _MAX_KINDS:
            self._conv_kinds = {}
        self._conv_kinds.update(found)
        return facts

    # ------------------------------------------------------------------ devices

    async def device_list(self, account_id: str) -> list[DeviceInfo]:
        def q(conn: sqlite3.Connection) -> list[DeviceInfo]:
            rows = conn.execute(
                "SELECT device_id, name, created_at, NULLIF(welcomed_at, 0) FROM devices"
                " WHERE account_id = ? ORDER BY device_id",
                (account_id,),
            )
            return [DeviceInfo(*row) for row in rows]

        return await self._read(q)
