"""Account settings: who may add the account to a group."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.protocol import ErrorCode
from tidings.protocol.rest import GroupAdds
from tidings.server.domain import Refused
from tidings.server.domain.conversations import direct_key
from tidings.server.store.sqlite.writer import Database


class AccountSettings(Database):
    async def group_adds(self, account_id: str) -> GroupAdds:
        def q(conn: sqlite3.Connection) -> GroupAdds:
            row = conn.execute(
                "SELECT group_adds FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if row is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such account")
            return "contacts" if row[0] == "contacts" else "everyone"

        return await self._read(q)

    async def set_group_adds(self, account_id: str, value: GroupAdds) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE accounts SET group_adds = ? WHERE id = ?", (value, account_id))

        await self._write(tx)

    async def refusing_group_adds(self, actor: str, targets: Sequence[str]) -> list[str]:
        wanted = [t for t in dict.fromkeys(targets) if t != actor]

        def q(conn: sqlite3.Connection) -> list[str]:
            refusing: list[str] = []
            for target in wanted:
                row = conn.execute(
                    "SELECT group_adds FROM accounts WHERE id = ?", (target,)
                ).fetchone()
                if row is None or row[0] != "contacts":
                    continue
                # A contact: the direct conversation with the actor, where the target spoke.
                spoke = conn.execute(
                    "SELECT 1 FROM conversations c JOIN members m ON m.conv_id = c.id"
                    " WHERE c.direct_key = ? AND m.account_id = ? AND m.last_sent > 0",
                    (direct_key(actor, target), target),
                ).fetchone()
                if spoke is None:
                    refusing.append(target)
            return refusing

        return await self._read(q)
