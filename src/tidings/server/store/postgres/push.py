"""Push registrations (one per device) and notification levels (per account and conversation),
in the ``push`` migration component. A registration references its device with ``ON DELETE
CASCADE``: whatever removes a device removes its registration in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.server.push.store import (
    REGISTRATION_COLUMNS,
    NotifySetting,
    PushTargets,
    StoredRegistration,
    registration_from_row,
    setting_from_row,
)
from tidings.server.store.postgres.batches import Batcher
from tidings.server.store.postgres.database import Connection, Database


class PushRecords(Database):
    #: coalesces the "anyone registered?" reads of one event-loop turn (made at the first)
    _registered: Batcher[tuple[str, ...], bool] | None = None

    async def _any_registered(self, accounts: Sequence[str]) -> bool:
        """Whether one of ``accounts`` registered for push. The questions asked together are
        answered by one statement: every Send asks it."""
        if self._registered is None:
            self._registered = Batcher(self._registered_batch, lambda _: None, lanes=1)
        return await self._registered.submit(tuple(accounts))

    async def _registered_batch(self, asks: list[tuple[str, ...]]) -> list[bool]:
        wanted = sorted({account for accounts in asks for account in accounts})
        found = {str(row[0]) for row in await self._fetch(_REGISTERED, wanted)}
        return [not found.isdisjoint(accounts) for accounts in asks]

    async def set_push_registration(self, registration: StoredRegistration) -> None:
        r = registration

        async def tx(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO push_registrations ({REGISTRATION_COLUMNS})"  # noqa: S608  # constant columns
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account_id, device_id)"
                " DO UPDATE SET platform = excluded.platform, token = excluded.token,"
                " p256dh = excluded.p256dh, auth = excluded.auth, topic = excluded.topic,"
                " updated_at = excluded.updated_at",
                r.account_id,
                r.device_id,
                r.platform,
                r.token,
                r.p256dh,
                r.auth,
                r.topic,
                r.updated_at,
            )

        await self._write(tx)

    async def push_registration(self, account_id: str, device_id: int) -> StoredRegistration | None:
        async def q(conn: Connection) -> StoredRegistration | None:
            row = await conn.fetchrow(
                f"SELECT {REGISTRATION_COLUMNS} FROM push_registrations"  # noqa: S608  # constant columns
                " WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return registration_from_row(row) if row is not None else None

        return await self._read(q)

    async def clear_push_registration(self, account_id: str, device_id: int) -> bool:
        async def tx(conn: Connection) -> bool:
            status = await conn.execute(
                "DELETE FROM push_registrations WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return status != "DELETE 0"

        return await self._write(tx)

    async def drop_push_registration(self, account_id: str, device_id: int, token: str) -> bool:
        async def tx(conn: Connection) -> bool:
            status = await conn.execute(
                "DELETE FROM push_registrations"
                " WHERE account_id = $1 AND device_id = $2 AND token = $3",
                account_id,
                device_id,
                token,
            )
            return status != "DELETE 0"

        return await self._write(tx)

    async def push_targets(self, conv_id: str, accounts: Sequence[str]) -> PushTargets:
        wanted = list(dict.fromkeys(accounts))
        if not await self._any_registered(wanted):
            # Nobody to wake: what else the targets hold is only read for registrations.
            return PushTargets("", [], {})

        async def q(conn: Connection) -> PushTargets:
            kind = await conn.fetchval("SELECT kind FROM conversations WHERE id = $1", conv_id)
            registrations = [
                registration_from_row(r)
                for r in await conn.fetch(
                    f"SELECT {REGISTRATION_COLUMNS} FROM push_registrations"  # noqa: S608  # constant columns
                    " WHERE account_id = ANY($1::text[])",
                    wanted,
                )
            ]
            settings = {
                str(r[0]): setting_from_row(r[1], r[2])
                for r in await conn.fetch(
                    "SELECT account_id, level, muted_until FROM notify_levels"
                    " WHERE conv_id = $1 AND account_id = ANY($2::text[])",
                    conv_id,
                    wanted,
                )
            }
            return PushTargets(str(kind) if kind else "", registrations, settings)

        return await self._read(q)

    async def notify_setting(self, account_id: str, conv_id: str) -> NotifySetting:
        async def q(conn: Connection) -> NotifySetting:
            row = await conn.fetchrow(
                "SELECT level, muted_until FROM notify_levels WHERE account_id = $1"
                " AND conv_id = $2",
                account_id,
                conv_id,
            )
            return setting_from_row(row[0], row[1]) if row is not None else NotifySetting()

        return await self._read(q)

    async def notify_settings_of(self, account_id: str) -> dict[str, NotifySetting]:
        async def q(conn: Connection) -> dict[str, NotifySetting]:
            rows = await conn.fetch(
                "SELECT conv_id, level, muted_until FROM notify_levels WHERE account_id = $1",
                account_id,
            )
            return {str(r[0]): setting_from_row(r[1], r[2]) for r in rows}

        return await self._read(q)

    async def set_notify_setting(
        self, account_id: str, conv_id: str, setting: NotifySetting
    ) -> None:
        async def tx(conn: Connection) -> None:
            if setting.level == "all" and setting.muted_until is None:
                await conn.execute(
                    "DELETE FROM notify_levels WHERE account_id = $1 AND conv_id = $2",
                    account_id,
                    conv_id,
                )
                return
            await conn.execute(
                "INSERT INTO notify_levels (account_id, conv_id, level, muted_until)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (conv_id, account_id)"
                " DO UPDATE SET level = excluded.level, muted_until = excluded.muted_until",
                account_id,
                conv_id,
                setting.level,
                setting.muted_until,
            )

        await self._write(tx)


#: Which of the accounts ($1) registered for push: most Sends go to nobody who did.
_REGISTERED = (
    "SELECT DISTINCT account_id FROM push_registrations WHERE account_id = ANY($1::text[])"
)
