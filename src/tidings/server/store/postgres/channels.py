"""Broadcast channels (the "channels" component's tables): the channel, its members, its log of
posts (each stored once), invite links and the fan-out positions
(:class:`~tidings.server.channels.store.ChannelStore`).

Between nodes: a post's seq is taken by ``UPDATE channels SET last_seq = last_seq + 1 ...
RETURNING`` (the channel's row stays locked until commit: concurrent posters queue on it, a
rollback gives the number back, so a channel's seqs stay gapless), and a post's global
position ``pos`` is taken under a transaction-scoped advisory lock that every append holds
until it commits: positions become visible in order, so a fan-out pump walking the log by
position never passes a post that commits later with a lower one. The member count moves in
the transaction that adds or removes the member row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from tidings.protocol import ErrorCode
from tidings.protocol.channels import Post
from tidings.server.channels.store import (
    AppendedPost,
    ChannelAdmin,
    ChannelRecord,
    Membership,
    NewChannelPost,
    SubscriberRow,
)
from tidings.server.domain import Refused
from tidings.server.push.store import (
    REGISTRATION_COLUMNS,
    StoredRegistration,
    registration_from_row,
)
from tidings.server.store.postgres.database import Connection, Database

_CHANNEL_COLUMNS = (
    "id, title, handle, public, description, owner, last_seq, subscribers, created_at"
)
_POST_COLUMNS = "channel, seq, id, author, author_device, ts, server_ts, content, signature"

#: pg_advisory_xact_lock key of the channel log's positions ("chanlog" in ASCII)
_LOG_LOCK = 0x63_6861_6E6C_6F67


def _post(row: Iterable[Any]) -> Post:  # records are untyped
    channel, seq, pid, author, device, ts, server_ts, content, signature = row
    return Post(
        str(channel), int(seq), uuid.UUID(bytes=bytes(pid)), str(author), int(device), int(ts),
        int(server_ts), bytes(content), bytes(signature),
    )  # fmt: skip


async def _one(conn: Connection, where: str, value: str) -> ChannelRecord | None:
    sql = f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE {where} = $1"  # noqa: S608
    row = await conn.fetchrow(sql, value)
    if row is None:
        return None
    cid, title, handle, public, description, owner, last_seq, subscribers, created = row
    admins = tuple(
        ChannelAdmin(str(a), str(u), str(r))
        for a, u, r in await conn.fetch(
            "SELECT m.account_id, COALESCE(a.username, ''), m.role FROM channel_members m"
            " LEFT JOIN accounts a ON a.id = m.account_id"
            " WHERE m.channel = $1 AND m.role IN ('owner', 'admin')"
            " ORDER BY m.role = 'admin', m.account_id",
            cid,
        )
    )
    return ChannelRecord(
        str(cid), str(title), None if handle is None else str(handle), bool(public),
        str(description), str(owner), int(last_seq), int(subscribers), int(created), admins,
    )  # fmt: skip


async def _role(conn: Connection, channel_id: str, account_id: str) -> str | None:
    """The account's role, its member row locked until the transaction ends."""
    found = await conn.fetchval(
        "SELECT role FROM channel_members WHERE channel = $1 AND account_id = $2 FOR UPDATE",
        channel_id,
        account_id,
    )
    return None if found is None else str(found)


async def _add_member(
    conn: Connection, channel_id: str, account_id: str, role: str, now: int
) -> None:
    """Add a member row and count it, unless the account is a member already."""
    added = await conn.fetchval(
        "INSERT INTO channel_members (channel, account_id, role, notify, joined_at)"
        " VALUES ($1, $2, $3, 'none', $4) ON CONFLICT DO NOTHING RETURNING 1",
        channel_id,
        account_id,
        role,
        now,
    )
    if added is not None:
        await conn.execute(
            "UPDATE channels SET subscribers = subscribers + 1 WHERE id = $1", channel_id
        )


class Channels(Database):
    async def create_channel(
        self,
        channel_id: str,
        title: str,
        handle: str | None,
        public: bool,
        description: str,
        owner: str,
        now: int,
    ) -> ChannelRecord:
        async def tx(conn: Connection) -> ChannelRecord:
            # A handle taken concurrently: the unique constraint, a rerun, this answer.
            if handle is not None and await conn.fetchval(
                "SELECT 1 FROM channels WHERE handle = $1", handle
            ):
                raise Refused(ErrorCode.CONFLICT, f"the handle {handle} is taken")
            await conn.execute(
                "INSERT INTO channels (id, title, handle, public, description, owner, last_seq,"
                " subscribers, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, 1, $7)",
                channel_id, title, handle, int(public), description, owner, now,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO channel_members (channel, account_id, role, notify, joined_at)"
                " VALUES ($1, $2, 'owner', 'none', $3)",
                channel_id,
                owner,
                now,
            )
            record = await _one(conn, "id", channel_id)
            assert record is not None
            return record

        return await self._write(tx)

    async def channel(self, channel_id: str) -> ChannelRecord | None:
        return await self._read(lambda conn: _one(conn, "id", channel_id))

    async def channel_by_handle(self, handle: str) -> ChannelRecord | None:
        return await self._read(lambda conn: _one(conn, "handle", handle))

    async def membership(self, channel_id: str, account_id: str) -> Membership | None:
        async def q(conn: Connection) -> Membership | None:
            row = await conn.fetchrow(
                "SELECT role, notify FROM channel_members WHERE channel = $1 AND account_id = $2",
                channel_id,
                account_id,
            )
            return None if row is None else Membership(str(row[0]), str(row[1]))

        return await self._read(q)

    async def channels_of(self, account_id: str) -> list[tuple[ChannelRecord, Membership]]:
        async def q(conn: Connection) -> list[tuple[ChannelRecord, Membership]]:
            rows = await conn.fetch(
                "SELECT channel, role, notify FROM channel_members WHERE account_id = $1"
                " ORDER BY channel",
                account_id,
            )
            found = []
            for channel_id, role, notify in rows:
                record = await _one(conn, "id", channel_id)
                if record is not None:
                    found.append((record, Membership(str(role), str(notify))))
            return found

        return await self._read(q)

    async def subscribe(self, channel_id: str, account_id: str, now: int) -> None:
        await self._write(lambda conn: _add_member(conn, channel_id, account_id, "subscriber", now))

    async def unsubscribe(self, channel_id: str, account_id: str) -> None:
        async def tx(conn: Connection) -> None:
            role = await _role(conn, channel_id, account_id)
            if role is None:
                return
            if role == "owner":
                raise Refused(ErrorCode.FORBIDDEN, "the owner cannot leave the channel")
            await conn.execute(
                "DELETE FROM channel_members WHERE channel = $1 AND account_id = $2",
                channel_id,
                account_id,
            )
            await conn.execute(
                "UPDATE channels SET subscribers = subscribers - 1 WHERE id = $1", channel_id
            )

        await self._write(tx)

    async def set_role(self, channel_id: str, account_id: str, role: str, now: int) -> None:
        async def tx(conn: Connection) -> None:
            current = await _role(conn, channel_id, account_id)
            if current == "owner":
                raise Refused(ErrorCode.FORBIDDEN, "the owner stays the owner")
            if current is None:
                if role != "subscriber":
                    await _add_member(conn, channel_id, account_id, role, now)
                return
            await conn.execute(
                "UPDATE channel_members SET role = $1 WHERE channel = $2 AND account_id = $3",
                role,
                channel_id,
                account_id,
            )

        await self._write(tx)

    async def set_channel_notify(self, channel_id: str, account_id: str, level: str) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE channel_members SET notify = $1 WHERE channel = $2 AND account_id = $3",
                level,
                channel_id,
                account_id,
            )

        await self._write(tx)

    async def subscribers(self, channel_id: str, after: str, limit: int) -> list[SubscriberRow]:
        async def q(conn: Connection) -> list[SubscriberRow]:
            rows = await conn.fetch(
                "SELECT m.account_id, COALESCE(a.username, ''), m.role, m.joined_at"
                " FROM channel_members m LEFT JOIN accounts a ON a.id = m.account_id"
                " WHERE m.channel = $1 AND m.account_id > $2 ORDER BY m.account_id LIMIT $3",
                channel_id,
                after,
                limit,
            )
            return [SubscriberRow(str(a), str(u), str(r), int(j)) for a, u, r, j in rows]

        return await self._read(q)

    async def subscriber_ids(self, channel_id: str) -> list[str]:
        async def q(conn: Connection) -> list[str]:
            rows = await conn.fetch(
                "SELECT account_id FROM channel_members WHERE channel = $1", channel_id
            )
            return [str(r[0]) for r in rows]

        return await self._read(q)

    async def create_invite(self, token: str, channel_id: str, by: str, now: int) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO channel_invites (token, channel, created_by, created_at, revoked_at)"
                " VALUES ($1, $2, $3, $4, NULL)",
                token,
                channel_id,
                by,
                now,
            )

        await self._write(tx)

    async def invite_channel(self, token: str) -> str | None:
        async def q(conn: Connection) -> str | None:
            found = await conn.fetchval(
                "SELECT channel FROM channel_invites WHERE token = $1 AND revoked_at IS NULL",
                token,
            )
            return None if found is None else str(found)

        return await self._read(q)

    async def revoke_invite(self, channel_id: str, token: str, now: int) -> bool:
        async def tx(conn: Connection) -> bool:
            done = await conn.fetchval(
                "UPDATE channel_invites SET revoked_at = $1 WHERE token = $2 AND channel = $3"
                " AND revoked_at IS NULL RETURNING 1",
                now,
                token,
                channel_id,
            )
            return done is not None

        return await self._write(tx)

    async def append_post(self, post: NewChannelPost) -> AppendedPost:
        async with self._in_order(f"channel:{post.channel}"):  # in the order the posts came
            return await self._write(lambda conn: _append_post(conn, post))

    async def posts_after(self, channel_id: str, after: int, limit: int) -> list[Post]:
        async def q(conn: Connection) -> list[Post]:
            rows = await conn.fetch(
                f"SELECT {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE channel = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                channel_id,
                after,
                limit,
            )
            return [_post(r) for r in rows]

        return await self._read(q)

    async def posts_before(self, channel_id: str, before: int, limit: int) -> list[Post]:
        async def q(conn: Connection) -> list[Post]:
            rows = await conn.fetch(
                f"SELECT {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE channel = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                channel_id,
                before,
                limit,
            )
            return [_post(r) for r in reversed(rows)]

        return await self._read(q)

    async def log_after(self, pos: int, limit: int) -> list[tuple[int, Post]]:
        async def q(conn: Connection) -> list[tuple[int, Post]]:
            rows = await conn.fetch(
                f"SELECT pos, {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE pos > $1 ORDER BY pos LIMIT $2",
                pos,
                limit,
            )
            return [(int(r[0]), _post(tuple(r)[1:])) for r in rows]

        return await self._read(q)

    async def log_end(self) -> int:
        async def q(conn: Connection) -> int:
            return int(await conn.fetchval("SELECT COALESCE(MAX(pos), 0) FROM channel_posts"))

        return await self._read(q)

    async def fanout_position(self, name: str) -> int:
        async def q(conn: Connection) -> int:
            found = await conn.fetchval("SELECT position FROM channel_fanout WHERE name = $1", name)
            return 0 if found is None else int(found)

        return await self._read(q)

    async def set_fanout_position(self, name: str, position: int) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO channel_fanout (name, position) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE"
                " SET position = greatest(channel_fanout.position, excluded.position)",
                name,
                position,
            )

        await self._write(tx)

    async def channel_push_targets(self, channel_id: str) -> list[StoredRegistration]:
        async def q(conn: Connection) -> list[StoredRegistration]:
            columns = ", ".join(f"r.{c.strip()}" for c in REGISTRATION_COLUMNS.split(","))
            rows = await conn.fetch(
                f"SELECT {columns} FROM channel_members m"  # noqa: S608
                " JOIN push_registrations r ON r.account_id = m.account_id"
                " WHERE m.channel = $1 AND m.notify = 'all'",
                channel_id,
            )
            return [registration_from_row(r) for r in rows]

        return await self._read(q)


async def _append_post(conn: Connection, post: NewChannelPost) -> AppendedPost:
    """One append (see the module's docstring); a concurrent one of the same id makes the
    insert violate ``UNIQUE (channel, id)``: the rerun finds it stored and answers it."""
    stored = await conn.fetchrow(
        f"SELECT pos, {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
        " WHERE channel = $1 AND id = $2",
        post.channel,
        post.id.bytes,
    )
    if stored is not None:
        return AppendedPost(_post(tuple(stored)[1:]), int(stored[0]), duplicate=True)
    if await conn.fetchval("SELECT 1 FROM channels WHERE id = $1", post.channel) is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such channel")
    # The author's row is locked (FOR SHARE): a demotion waits for this post, or goes first.
    role = await conn.fetchval(
        "SELECT role FROM channel_members WHERE channel = $1 AND account_id = $2 FOR SHARE",
        post.channel,
        post.author,
    )
    if role not in ("owner", "admin"):
        raise Refused(ErrorCode.FORBIDDEN, "only the channel's admins may post")
    seq = int(
        await conn.fetchval(
            "UPDATE channels SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            post.channel,
        )
    )
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOG_LOCK)
    pos = await conn.fetchval(
        f"INSERT INTO channel_posts ({_POST_COLUMNS})"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING pos",
        post.channel, seq, post.id.bytes, post.author, post.author_device, post.ts,
        post.server_ts, post.content, post.signature,
    )  # fmt: skip
    stored_post = Post(
        post.channel, seq, post.id, post.author, post.author_device, post.ts, post.server_ts,
        post.content, post.signature,
    )  # fmt: skip
    return AppendedPost(stored_post, int(pos), duplicate=False)
