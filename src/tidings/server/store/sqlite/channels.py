"""Broadcast channels (the "channels" component's tables): the channel, its members, its log of
posts (each stored once), invite links and the fan-out positions
(:class:`~tidings.server.channels.store.ChannelStore`)."""

from __future__ import annotations

import sqlite3
import uuid

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
from tidings.server.store.sqlite.writer import Database

_CHANNEL_COLUMNS = (
    "id, title, handle, public, description, owner, last_seq, subscribers, created_at"
)
_POST_COLUMNS = "channel, seq, id, author, author_device, ts, server_ts, content, signature"


def _post(row: tuple[object, ...]) -> Post:
    channel, seq, pid, author, device, ts, server_ts, content, signature = row
    assert isinstance(seq, int) and isinstance(pid, bytes) and isinstance(device, int)
    assert isinstance(ts, int) and isinstance(server_ts, int)
    assert isinstance(content, bytes) and isinstance(signature, bytes)
    return Post(
        str(channel), seq, uuid.UUID(bytes=pid), str(author), device, ts, server_ts, content,
        signature,
    )  # fmt: skip


#: A channel's owner and admins (every read of a channel lists them), through the index
#: channel_members_by_role: never by reading the subscribers' rows.
ADMINS_SQL = (
    "SELECT m.account_id, COALESCE(a.username, ''), m.role FROM channel_members m"
    " LEFT JOIN accounts a ON a.id = m.account_id"
    " WHERE m.channel = ? AND m.role IN ('owner', 'admin')"
    " ORDER BY m.role = 'admin', m.account_id"
)


def _channel(conn: sqlite3.Connection, row: tuple[object, ...] | None) -> ChannelRecord | None:
    if row is None:
        return None
    cid, title, handle, public, description, owner, last_seq, subscribers, created = row
    assert isinstance(last_seq, int) and isinstance(subscribers, int)
    assert isinstance(created, int)
    admins = tuple(
        ChannelAdmin(str(a), str(u), str(r)) for a, u, r in conn.execute(ADMINS_SQL, (cid,))
    )
    return ChannelRecord(
        str(cid), str(title), None if handle is None else str(handle), bool(public),
        str(description), str(owner), last_seq, subscribers, created, admins,
    )  # fmt: skip


def _one(conn: sqlite3.Connection, where: str, value: str) -> ChannelRecord | None:
    sql = f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE {where} = ?"  # noqa: S608
    return _channel(conn, conn.execute(sql, (value,)).fetchone())


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
        def tx(conn: sqlite3.Connection) -> ChannelRecord:
            if (
                handle is not None
                and conn.execute("SELECT 1 FROM channels WHERE handle = ?", (handle,)).fetchone()
            ):
                raise Refused(ErrorCode.CONFLICT, f"the handle {handle} is taken")
            conn.execute(
                "INSERT INTO channels (id, title, handle, public, description, owner, last_seq,"
                " subscribers, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?)",
                (channel_id, title, handle, int(public), description, owner, now),
            )
            conn.execute(
                "INSERT INTO channel_members VALUES (?, ?, 'owner', 'none', ?)",
                (channel_id, owner, now),
            )
            record = _one(conn, "id", channel_id)
            assert record is not None
            return record

        return await self._write(tx)

    async def channel(self, channel_id: str) -> ChannelRecord | None:
        return await self._read(lambda conn: _one(conn, "id", channel_id))

    async def channel_by_handle(self, handle: str) -> ChannelRecord | None:
        return await self._read(lambda conn: _one(conn, "handle", handle))

    async def membership(self, channel_id: str, account_id: str) -> Membership | None:
        def q(conn: sqlite3.Connection) -> Membership | None:
            row = conn.execute(
                "SELECT role, notify FROM channel_members WHERE channel = ? AND account_id = ?",
                (channel_id, account_id),
            ).fetchone()
            return None if row is None else Membership(str(row[0]), str(row[1]))

        return await self._read(q)

    async def channels_of(self, account_id: str) -> list[tuple[ChannelRecord, Membership]]:
        def q(conn: sqlite3.Connection) -> list[tuple[ChannelRecord, Membership]]:
            rows = conn.execute(
                "SELECT channel, role, notify FROM channel_members WHERE account_id = ?"
                " ORDER BY channel",
                (account_id,),
            ).fetchall()
            found = []
            for channel_id, role, notify in rows:
                record = _one(conn, "id", channel_id)
                if record is not None:
                    found.append((record, Membership(str(role), str(notify))))
            return found

        return await self._read(q)

    async def subscribe(self, channel_id: str, account_id: str, now: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            added = conn.execute(
                "INSERT OR IGNORE INTO channel_members VALUES (?, ?, 'subscriber', 'none', ?)",
                (channel_id, account_id, now),
            ).rowcount
            if added:
                conn.execute(
                    "UPDATE channels SET subscribers = subscribers + 1 WHERE id = ?",
                    (channel_id,),
                )

        await self._write(tx)

    async def unsubscribe(self, channel_id: str, account_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT role FROM channel_members WHERE channel = ? AND account_id = ?",
                (channel_id, account_id),
            ).fetchone()
            if row is None:
                return
            if row[0] == "owner":
                raise Refused(ErrorCode.FORBIDDEN, "the owner cannot leave the channel")
            conn.execute(
                "DELETE FROM channel_members WHERE channel = ? AND account_id = ?",
                (channel_id, account_id),
            )
            conn.execute(
                "UPDATE channels SET subscribers = subscribers - 1 WHERE id = ?", (channel_id,)
            )

        await self._write(tx)

    async def set_role(self, channel_id: str, account_id: str, role: str, now: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT role FROM channel_members WHERE channel = ? AND account_id = ?",
                (channel_id, account_id),
            ).fetchone()
            if row is not None and row[0] == "owner":
                raise Refused(ErrorCode.FORBIDDEN, "the owner stays the owner")
            if row is None:
                if role == "subscriber":
                    return
                conn.execute(
                    "INSERT INTO channel_members VALUES (?, ?, ?, 'none', ?)",
                    (channel_id, account_id, role, now),
                )
                conn.execute(
                    "UPDATE channels SET subscribers = subscribers + 1 WHERE id = ?",
                    (channel_id,),
                )
            else:
                conn.execute(
                    "UPDATE channel_members SET role = ? WHERE channel = ? AND account_id = ?",
                    (role, channel_id, account_id),
                )

        await self._write(tx)

    async def set_channel_notify(self, channel_id: str, account_id: str, level: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE channel_members SET notify = ? WHERE channel = ? AND account_id = ?",
                (level, channel_id, account_id),
            )

        await self._write(tx)

    async def subscribers(self, channel_id: str, after: str, limit: int) -> list[SubscriberRow]:
        def q(conn: sqlite3.Connection) -> list[SubscriberRow]:
            return [
                SubscriberRow(str(a), str(u), str(r), int(j))
                for a, u, r, j in conn.execute(
                    "SELECT m.account_id, COALESCE(a.username, ''), m.role, m.joined_at"
                    " FROM channel_members m LEFT JOIN accounts a ON a.id = m.account_id"
                    " WHERE m.channel = ? AND m.account_id > ? ORDER BY m.account_id LIMIT ?",
                    (channel_id, after, limit),
                )
            ]

        return await self._read(q)

    async def subscriber_ids(self, channel_id: str) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT account_id FROM channel_members WHERE channel = ?", (channel_id,)
                )
            ]

        return await self._read(q)

    async def create_invite(self, token: str, channel_id: str, by: str, now: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO channel_invites VALUES (?, ?, ?, ?, NULL)",
                (token, channel_id, by, now),
            )

        await self._write(tx)

    async def invite_channel(self, token: str) -> str | None:
        def q(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT channel FROM channel_invites WHERE token = ? AND revoked_at IS NULL",
                (token,),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(q)

    async def revoke_invite(self, channel_id: str, token: str, now: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE channel_invites SET revoked_at = ? WHERE token = ? AND channel = ?"
                    " AND revoked_at IS NULL",
                    (now, token, channel_id),
                ).rowcount
                > 0
            )

        return await self._write(tx)

    async def append_post(self, post: NewChannelPost) -> AppendedPost:
        def tx(conn: sqlite3.Connection) -> AppendedPost:
            stored = conn.execute(
                f"SELECT pos, {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE channel = ? AND id = ?",
                (post.channel, post.id.bytes),
            ).fetchone()
            if stored is not None:
                return AppendedPost(_post(stored[1:]), int(stored[0]), duplicate=True)
            channel = conn.execute(
                "SELECT last_seq FROM channels WHERE id = ?", (post.channel,)
            ).fetchone()
            if channel is None:
                raise Refused(ErrorCode.NOT_FOUND, "no such channel")
            role = conn.execute(
                "SELECT role FROM channel_members WHERE channel = ? AND account_id = ?",
                (post.channel, post.author),
            ).fetchone()
            if role is None or role[0] not in ("owner", "admin"):
                raise Refused(ErrorCode.FORBIDDEN, "only the channel's admins may post")
            seq = int(channel[0]) + 1
            conn.execute("UPDATE channels SET last_seq = ? WHERE id = ?", (seq, post.channel))
            cursor = conn.execute(
                f"INSERT INTO channel_posts ({_POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    post.channel, seq, post.id.bytes, post.author, post.author_device, post.ts,
                    post.server_ts, post.content, post.signature,
                ),
            )  # fmt: skip
            assert cursor.lastrowid is not None
            stored_post = Post(
                post.channel, seq, post.id, post.author, post.author_device, post.ts,
                post.server_ts, post.content, post.signature,
            )  # fmt: skip
            return AppendedPost(stored_post, cursor.lastrowid, duplicate=False)

        return await self._write(tx)

    async def posts_after(self, channel_id: str, after: int, limit: int) -> list[Post]:
        def q(conn: sqlite3.Connection) -> list[Post]:
            rows = conn.execute(
                f"SELECT {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                (channel_id, after, limit),
            )
            return [_post(r) for r in rows]

        return await self._read(q)

    async def posts_before(self, channel_id: str, before: int, limit: int) -> list[Post]:
        def q(conn: sqlite3.Connection) -> list[Post]:
            rows = conn.execute(
                f"SELECT {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE channel = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (channel_id, before, limit),
            ).fetchall()
            return [_post(r) for r in reversed(rows)]

        return await self._read(q)

    async def log_after(self, pos: int, limit: int) -> list[tuple[int, Post]]:
        def q(conn: sqlite3.Connection) -> list[tuple[int, Post]]:
            rows = conn.execute(
                f"SELECT pos, {_POST_COLUMNS} FROM channel_posts"  # noqa: S608
                " WHERE pos > ? ORDER BY pos LIMIT ?",
                (pos, limit),
            )
            return [(int(r[0]), _post(r[1:])) for r in rows]

        return await self._read(q)

    async def log_end(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute("SELECT COALESCE(MAX(pos), 0) FROM channel_posts").fetchone()[0]
            )

        return await self._read(q)

    async def fanout_position(self, name: str) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT position FROM channel_fanout WHERE name = ?", (name,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(q)

    async def set_fanout_position(self, name: str, position: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO channel_fanout VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET position = MAX(position, excluded.position)",
                (name, position),
            )

        await self._write(tx)

    async def channel_push_targets(self, channel_id: str) -> list[StoredRegistration]:
        def q(conn: sqlite3.Connection) -> list[StoredRegistration]:
            columns = ", ".join(f"r.{c.strip()}" for c in REGISTRATION_COLUMNS.split(","))
            rows = conn.execute(
                f"SELECT {columns} FROM channel_members m"  # noqa: S608
                " JOIN push_registrations r ON r.account_id = m.account_id"
                " WHERE m.channel = ? AND m.notify = 'all'",
                (channel_id,),
            )
            return [registration_from_row(r) for r in rows]

        return await self._read(q)
