"""Account settings: who may add the account to a group."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.protocol import ErrorCode
from tidings.protocol.rest import GroupAdds
from tidings.server.domain import Refused
from tidings.server.domain.conversations import direct_key
from tidings.server.store.postgres.database import Connection, Database


class AccountSettings(Database):
    async def group_adds(self, account_id: str) -> GroupAdds:
        async def q(conn: Connection) -> GroupAdds:
            row = await conn.fetchrow("SELECT group_adds FROM accounts WHERE id = $1", account_id)
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such account")
            return "contacts" if row[0] == "contacts" else "everyone"

        return await self._read(q)

    async def set_group_adds(self, account_id: str, value: GroupAdds) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE accounts SET group_adds = $1 WHERE id = $2", value, account_id
            )

        await self._write(tx)

    async def refusing_group_adds(self, actor: str, targets: Sequence[str]) -> list[str]:
        wanted = [t for t in dict.fromkeys(targets) if t != actor]

        async def q(conn: Connection) -> list[str]:
            rows = await conn.fetch(
                "SELECT id FROM accounts WHERE id = ANY($1::text[]) AND group_adds = 'contacts'",
                wanted,
            )
            strict = {row[0] for row in rows}
            refusing: list[str] = []
            for target in (t for t in wanted if t in strict):
                # A contact: the direct conversation with the actor, where the target spoke.
                spoke = await conn.fetchval(
                    "SELECT 1 FROM conversations c JOIN members m ON m.conv_id = c.id"
                    " WHERE c.direct_key = $1 AND m.account_id = $2 AND m.last_sent > 0",
                    direct_key(actor, target),
                    target,
                )
                if spoke is None:
                    refusing.append(target)
            return refusing

        return await self._read(q)
