"""Push registrations (one per device) and notification levels (per account and conversation).

Tables in the ``push`` migration component (``migrations/push_v1.sql``). A registration
references its device with ``ON DELETE CASCADE``: removing a device, or replacing the
account's identity (which removes the other devices), deletes its registration in the same
transaction, whatever path removed it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.server.push.store import (
    REGISTRATION_COLUMNS,
    NotifySetting,
    PushTargets,
    StoredRegistration,
    registration_from_row,
    setting_from_row,
)
from tidings.server.store.sqlite.writer import Database

#: bound parameters per IN (...) list, below SQLite's limit
_CHUNK = 500


class PushRecords(Database):
    #: Accounts that have (or had) a push registration, read once; None: not read yet. It
    #: only ever grows while the store is open (a deleted registration may stay in it: a
    #: superset only costs a query), so most messages to accounts that never registered
    #: (desktop clients, bots) decide "no wake" without a read.
    _push_accounts: set[str] | None = None
    #: Accounts registered since the store opened (kept apart so that reading the set
    #: concurrently with a registration cannot lose it)
    _push_added: frozenset[str] = frozenset()

    async def set_push_registration(self, registration: StoredRegistration) -> None:
        r = registration
        self._push_added = self._push_added | {r.account_id}
        if self._push_accounts is not None:
            self._push_accounts.add(r.account_id)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO push_registrations ({REGISTRATION_COLUMNS})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.account_id,
                    r.device_id,
                    r.platform,
                    r.token,
                    r.p256dh,
                    r.auth,
                    r.topic,
                    r.updated_at,
                ),
            )

        await self._write(tx)

    async def push_registration(self, account_id: str, device_id: int) -> StoredRegistration | None:
        def q(conn: sqlite3.Connection) -> StoredRegistration | None:
            row = conn.execute(
                f"SELECT {REGISTRATION_COLUMNS} FROM push_registrations"  # noqa: S608
                " WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            ).fetchone()
            return registration_from_row(row) if row is not None else None

        return await self._read(q)

    async def clear_push_registration(self, account_id: str, device_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM push_registrations WHERE account_id = ? AND device_id = ?",
                (account_id, device_id),
            )
            return cur.rowcount > 0

        return await self._write(tx)

    async def drop_push_registration(self, account_id: str, device_id: int, token: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM push_registrations"
                " WHERE account_id = ? AND device_id = ? AND token = ?",
                (account_id, device_id, token),
            )
            return cur.rowcount > 0

        return await self._write(tx)

    async def push_targets(self, conv_id: str, accounts: Sequence[str]) -> PushTargets:
        wanted = list(dict.fromkeys(accounts))
        if not await self._may_have_registrations(wanted):
            # Nobody to wake: what else the targets hold is only read for registrations.
            return PushTargets("", [], {})

        def q(conn: sqlite3.Connection) -> PushTargets:
            row = conn.execute("SELECT kind FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            registrations: list[StoredRegistration] = []
            settings: dict[str, NotifySetting] = {}
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                registrations.extend(
                    registration_from_row(r)
                    for r in conn.execute(
                        f"SELECT {REGISTRATION_COLUMNS} FROM push_registrations"  # noqa: S608
                        f" WHERE account_id IN ({marks})",
                        chunk,
                    )
                )
                for account_id, level, muted_until in conn.execute(
                    "SELECT account_id, level, muted_until FROM notify_levels"  # noqa: S608
                    f" WHERE conv_id = ? AND account_id IN ({marks})",
                    (conv_id, *chunk),
                ):
                    settings[str(account_id)] = setting_from_row(level, muted_until)
            return PushTargets(str(row[0]) if row else "", registrations, settings)

        return await self._read(q)

    async def _may_have_registrations(self, accounts: Sequence[str]) -> bool:
        if self._push_accounts is None:

            def q(conn: sqlite3.Connection) -> set[str]:
                rows = conn.execute("SELECT DISTINCT account_id FROM push_registrations")
                return {str(account) for (account,) in rows}

            loaded = await self._read(q)
            if self._push_accounts is None:
                self._push_accounts = loaded | self._push_added
        known = self._push_accounts
        return any(account in known for account in accounts)

    async def notify_setting(self, account_id: str, conv_id: str) -> NotifySetting:
        def q(conn: sqlite3.Connection) -> NotifySetting:
            row = conn.execute(
                "SELECT level, muted_until FROM notify_levels WHERE account_id = ? AND conv_id = ?",
                (account_id, conv_id),
            ).fetchone()
            return setting_from_row(*row) if row is not None else NotifySetting()

        return await self._read(q)

    async def notify_settings_of(self, account_id: str) -> dict[str, NotifySetting]:
        def q(conn: sqlite3.Connection) -> dict[str, NotifySetting]:
            return {
                str(conv_id): setting_from_row(level, muted_until)
                for conv_id, level, muted_until in conn.execute(
                    "SELECT conv_id, level, muted_until FROM notify_levels WHERE account_id = ?",
                    (account_id,),
                )
            }

        return await self._read(q)

    async def set_notify_setting(
        self, account_id: str, conv_id: str, setting: NotifySetting
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if setting.level == "all" and setting.muted_until is None:
                conn.execute(
                    "DELETE FROM notify_levels WHERE account_id = ? AND conv_id = ?",
                    (account_id, conv_id),
                )
                return
            conn.execute(
                "INSERT OR REPLACE INTO notify_levels (account_id, conv_id, level, muted_until)"
                " VALUES (?, ?, ?, ?)",
                (account_id, conv_id, setting.level, setting.muted_until),
            )

        await self._write(tx)
