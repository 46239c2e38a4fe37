"""The "channels" component of the local store: broadcast channels this account subscribes
to (client/channels.py).

A channel is a row of ``conversations`` (kind ``channel``, ``known = 0`` so the delivery engine
never sees it) and its posts are rows of ``messages`` (so ``history``, ``page_around`` and the
FTS5 search work unchanged); what only channels have lives here:

- ``channels``: the channel's info from the server, the caller's role, the subscriber count,
  ``cursor`` (every post from ``floor`` to ``cursor`` is stored: the newest contiguous run) and
  ``floor`` (older posts are fetched from the server on scroll).
- ``channel_admins``: every account this device saw as an admin of the channel;
  ``removed_at`` (server ms) once it saw it removed. A post verifies when its author was an
  admin when the server stored it (``server_ts < removed_at``): a removed admin's earlier posts
  stay genuine; a device that never saw that account as an admin cannot tell and flags them.
- ``channel_posts``: per post the signed fields, the signature and ``verified``; own posts
  still ``sending`` are the outbox (signed once, resent with the same bytes).
- ``channel_keys``: admins' identity keys from the key directory, cached.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid

from tidings.migrations import migrate
from tidings.protocol import channels as wire

from .types import Conversation, Message

SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        handle TEXT,
        public INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        owner TEXT NOT NULL DEFAULT '',
        role TEXT,                                -- NULL: not subscribed
        notify TEXT NOT NULL DEFAULT 'none',
        subscribers INTEGER NOT NULL DEFAULT 0,
        head INTEGER NOT NULL DEFAULT 0,
        cursor INTEGER NOT NULL DEFAULT 0,
        floor INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE channel_admins (
        channel TEXT NOT NULL,
        account_id TEXT NOT NULL,
        role TEXT NOT NULL,
        removed_at INTEGER,
        PRIMARY KEY (channel, account_id)
    );
    CREATE TABLE channel_posts (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        seq INTEGER,
        author TEXT NOT NULL,
        author_device INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        server_ts INTEGER NOT NULL DEFAULT 0,
        content BLOB NOT NULL,
        signature BLOB NOT NULL,
        verified INTEGER NOT NULL,
        sending INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX channel_posts_seq ON channel_posts (channel, seq);
    CREATE INDEX channel_posts_sending ON channel_posts (sending) WHERE sending = 1;
    CREATE TABLE channel_keys (
        account_id TEXT PRIMARY KEY,
        identity_key BLOB NOT NULL,
        fetched_at INTEGER NOT NULL
    );
    """,
)


def migrate_schema(db: sqlite3.Connection) -> None:
    migrate(db, SCHEMA, component="channels")


def is_channel(db: sqlite3.Connection, conv_id: str) -> bool:
    return db.execute("SELECT 1 FROM channels WHERE id = ?", (conv_id,)).fetchone() is not None


def save_info(db: sqlite3.Connection, info: wire.ChannelInfo, me: str, now: int) -> None:
    """What the server says about a channel (inside the caller's transaction)."""
    subscribed = info.role is not None
    db.execute(
        "INSERT INTO conversations (id, kind, title, created_at, last_activity, is_member,"
        " known) VALUES (?, 'channel', ?, ?, ?, ?, 0) ON CONFLICT (id) DO UPDATE SET"
        " kind = 'channel', title = excluded.title, is_member = excluded.is_member",
        (info.id, info.title, info.created_at, info.created_at, subscribed),
    )
    db.execute(
        "INSERT INTO channels (id, handle, public, description, owner, role, notify,"
        " subscribers, head) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " handle = excluded.handle, public = excluded.public,"
        " description = excluded.description, owner = excluded.owner, role = excluded.role,"
        " notify = excluded.notify, subscribers = excluded.subscribers,"
        " head = max(head, excluded.head)",
        (
            info.id,
            info.handle,
            info.public,
            info.description,
            info.owner,
            info.role,
            info.notify,
            info.subscribers,
            info.head,
        ),
    )
    current = {a.account_id for a in info.admins}
    db.execute(
        "UPDATE channel_admins SET removed_at = ? WHERE channel = ?"  # noqa: S608
        f" AND removed_at IS NULL AND account_id NOT IN ({','.join('?' * len(current))})",
        (now, info.id, *current),
    )
    for admin in info.admins:
        db.execute(
            "INSERT INTO channel_admins VALUES (?, ?, ?, NULL) ON CONFLICT DO UPDATE SET"
            " role = excluded.role, removed_at = NULL",
            (info.id, admin.account_id, admin.role),
        )
        db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (admin.account_id, admin.username))
    # members: the admins (role "admin": Conversation.is_admin) and me
    db.execute("DELETE FROM members WHERE conv_id = ?", (info.id,))
    db.executemany(
        "INSERT OR REPLACE INTO members VALUES (?, ?, 'admin')",
        [(info.id, a.account_id) for a in info.admins],
    )
    if subscribed and me not in current:
        db.execute("INSERT OR REPLACE INTO members VALUES (?, ?, 'member')", (info.id, me))


def was_admin(db: sqlite3.Connection, channel: str, account_id: str, server_ts: int) -> bool:
    """Whether ``account_id`` was an admin of ``channel`` when the server stored a post at
    ``server_ts`` (as far as this device saw)."""
    row = db.execute(
        "SELECT removed_at FROM channel_admins WHERE channel = ? AND account_id = ?",
        (channel, account_id),
    ).fetchone()
    return row is not None and (row[0] is None or server_ts < row[0])


def positions(db: sqlite3.Connection, channel: str) -> tuple[int, int, int]:
    """(cursor, floor, head) of ``channel``."""
    row = db.execute("SELECT cursor, floor, head FROM channels WHERE id = ?", (channel,)).fetchone()
    return (0, 1, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))


def set_positions(
    db: sqlite3.Connection, channel: str, cursor: int | None = None, floor: int | None = None
) -> None:
    if cursor is not None:
        db.execute(
            "UPDATE channels SET cursor = max(cursor, ?), head = max(head, ?) WHERE id = ?",
            (cursor, cursor, channel),
        )
    if floor is not None:
        db.execute("UPDATE channels SET floor = ? WHERE id = ?", (floor, channel))


def has_seq(db: sqlite3.Connection, channel: str, seq: int) -> bool:
    row = db.execute(
        "SELECT 1 FROM channel_posts WHERE channel = ? AND seq = ?", (channel, seq)
    ).fetchone()
    return row is not None


def store_post(
    db: sqlite3.Connection, post: wire.Post, body: str, verified: bool, is_own: bool
) -> bool:
    """A post from the log (inside the caller's transaction); False if this id or this seq is
    already stored (a post is kept once: a replay under another seq is dropped)."""
    if has_seq(db, post.channel, post.seq):
        return False
    cur = db.execute(
        "INSERT OR IGNORE INTO channel_posts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (
            post.id.hex,
            post.channel,
            post.seq,
            post.author,
            post.author_device,
            post.ts,
            post.server_ts,
            post.content,
            post.signature,
            verified,
        ),
    )
    if cur.rowcount == 0:
        return False
    db.execute(
        "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, sender_device,"
        " is_own, kind, body, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'text', ?, ?, ?)",
        (
            post.id.hex,
            post.channel,
            post.seq,
            post.seq,
            post.author,
            post.author_device,
            is_own,
            body,
            "delivered",
            post.server_ts if not is_own else post.ts,
        ),
    )
    db.execute(
        "UPDATE conversations SET last_activity = max(last_activity, ?) WHERE id = ?",
        (post.server_ts, post.channel),
    )
    return True


def with_verified(db: sqlite3.Connection, messages: list[Message]) -> list[Message]:
    """``messages`` with ``verified`` filled in for channel posts that failed the check."""
    if not messages:
        return messages
    ids = [m.id.hex for m in messages]
    marks = ",".join("?" * len(ids))
    bad = {
        str(r[0])
        for r in db.execute(
            f"SELECT id FROM channel_posts WHERE verified = 0 AND id IN ({marks})",  # noqa: S608
            ids,
        )
    }
    if not bad:
        return messages
    return [dataclasses.replace(m, verified=False) if m.id.hex in bad else m for m in messages]


def with_channel(db: sqlite3.Connection, conv: Conversation) -> Conversation:
    """``conv`` with its subscriber count, if it is a channel."""
    if conv.kind != "channel":
        return conv
    row = db.execute("SELECT subscribers FROM channels WHERE id = ?", (conv.id,)).fetchone()
    return conv if row is None else dataclasses.replace(conv, subscribers=int(row[0]))


def pending(db: sqlite3.Connection) -> list[tuple[str, wire.NewPost]]:
    """Own posts not yet accepted, in the order they were written."""
    return [
        (str(r[0]), wire.NewPost(id=uuid.UUID(r[1]), ts=r[2], content=r[3], signature=r[4]))
        for r in db.execute(
            "SELECT channel, id, ts, content, signature FROM channel_posts WHERE sending = 1"
            " ORDER BY rowid"
        )
    ]


def subscribed(db: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT id FROM channels WHERE role IS NOT NULL")]


def known_key(db: sqlite3.Connection, account_id: str) -> tuple[bytes, int] | None:
    row = db.execute(
        "SELECT identity_key, fetched_at FROM channel_keys WHERE account_id = ?", (account_id,)
    ).fetchone()
    return None if row is None else (bytes(row[0]), int(row[1]))


def save_key(db: sqlite3.Connection, account_id: str, key: bytes, now: int) -> None:
    db.execute("INSERT OR REPLACE INTO channel_keys VALUES (?, ?, ?)", (account_id, key, now))


def accept(db: sqlite3.Connection, post_id: uuid.UUID, seq: int, server_ts: int) -> bool:
    """An own post is in the log at ``seq``; False if it was not waiting (already known)."""
    cur = db.execute(
        "UPDATE channel_posts SET seq = ?, server_ts = ?, sending = 0 WHERE id = ? AND sending = 1",
        (seq, server_ts, post_id.hex),
    )
    if cur.rowcount == 0:
        return False
    db.execute(
        "UPDATE messages SET seq = ?, ord = ?, status = 'delivered' WHERE id = ?",
        (seq, seq, post_id.hex),
    )
    return True


def fail(db: sqlite3.Connection, post_id: uuid.UUID, reason: str) -> None:
    db.execute("UPDATE channel_posts SET sending = 0 WHERE id = ?", (post_id.hex,))
    db.execute(
        "UPDATE messages SET status = 'failed', fail_reason = ? WHERE id = ?",
        (reason, post_id.hex),
    )


def resend(db: sqlite3.Connection, post_id: uuid.UUID) -> bool:
    """A failed own post waits to be sent again (same id, same signed bytes); False if
    ``post_id`` is not an own post that failed."""
    cur = db.execute(
        "UPDATE channel_posts SET sending = 1 WHERE id = ? AND seq IS NULL AND sending = 0"
        " AND id IN (SELECT id FROM messages WHERE id = ? AND status = 'failed')",
        (post_id.hex, post_id.hex),
    )
    if cur.rowcount == 0:
        return False
    db.execute(
        "UPDATE messages SET status = 'sending', fail_reason = NULL WHERE id = ?", (post_id.hex,)
    )
    return True


def advance(db: sqlite3.Connection, channel: str) -> int:
    """Move the cursor over every stored post right above it; returns the new cursor."""
    cursor, _, _ = positions(db, channel)
    (top,) = db.execute(
        "SELECT coalesce(max(seq), 0) FROM channel_posts WHERE channel = ?", (channel,)
    ).fetchone()
    while cursor < top and has_seq(db, channel, cursor + 1):
        cursor += 1
    set_positions(db, channel, cursor=cursor)
    return cursor
