"""The local side of profiles, blocking and receipt times: the client store's "social"
component and the functions over it (no I/O besides the database handed in).

- ``own_profile``: this account's profile key and the version last uploaded.
- ``profiles``: what is known of each account's profile (this one's too): the profile key
  it shared with us (a ``ProfileKey`` message), the key and version the stored name, about
  text and avatar were decrypted with, and when it was last checked on the server.
- ``profile_shared``: which key each conversation has been given.
- ``blocked``: accounts this account blocks (a copy of the server's list).
- ``watermark_times``: when each member's watermarks last moved (message details).
- the ``display_names`` view: the name to show for an account, its profile name or else its
  username; the store's queries read names from it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from tidings.migrations import migrate

SCHEMA = (
    """
CREATE TABLE own_profile (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE profiles (
    account_id TEXT PRIMARY KEY,
    key BLOB,                                 -- the profile key it shared with us
    fetched_key BLOB,                         -- the key name/about/avatar were opened with
    version INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    about TEXT NOT NULL DEFAULT '',
    avatar BLOB,
    checked_at INTEGER NOT NULL DEFAULT 0     -- ms: last asked the server
);
CREATE TABLE profile_shared (
    conv_id TEXT PRIMARY KEY,
    key BLOB NOT NULL
);
CREATE TABLE blocked (account_id TEXT PRIMARY KEY);
CREATE TABLE watermark_times (
    conv_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    delivered_at INTEGER,
    read_at INTEGER,
    PRIMARY KEY (conv_id, account_id)
);
CREATE VIEW display_names AS
    SELECT u.account_id AS account_id, u.username AS username,
           COALESCE(NULLIF(p.name, ''), u.username) AS name
    FROM users u LEFT JOIN profiles p ON p.account_id = u.account_id;
""",
)

#: a contact's profile is asked for again after this long (ms), at the next sync
RECHECK_MS = 10 * 60 * 1000


def migrate_schema(db: sqlite3.Connection) -> None:
    migrate(db, SCHEMA, component="social")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class StoredProfile:
    account_id: str
    name: str
    about: str
    avatar: bytes | None
    version: int
    #: whether we have its profile key (without it nothing can be opened)
    has_key: bool


# ----------------------------------------------------------------------------- own


def own_key(db: sqlite3.Connection) -> tuple[bytes, int] | None:
    """(profile key, version last uploaded) of this account, if it has a profile."""
    row = db.execute("SELECT key, version FROM own_profile").fetchone()
    return None if row is None else (bytes(row[0]), int(row[1]))


def set_own_key(db: sqlite3.Connection, key: bytes, version: int) -> None:
    db.execute(
        "INSERT INTO own_profile VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
        " SET key = excluded.key, version = excluded.version",
        (key, version),
    )


# ----------------------------------------------------------------------------- contacts


def take_key(db: sqlite3.Connection, sender: str, key: bytes, me: str) -> None:
    """A ``ProfileKey`` message arrived from ``sender`` (inside the store's transaction).
    One from this account's other device is our own key: adopted, version unknown."""
    if sender == me:
        own = own_key(db)
        if own is None or own[0] != key:
            set_own_key(db, key, 0)
    db.execute(
        "INSERT INTO profiles (account_id, key) VALUES (?, ?) ON CONFLICT (account_id)"
        " DO UPDATE SET key = excluded.key",
        (sender, key),
    )


def key_of(db: sqlite3.Connection, account_id: str) -> bytes | None:
    row = db.execute("SELECT key FROM profiles WHERE account_id = ?", (account_id,)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def to_fetch(
    db: sqlite3.Connection, now: int | None = None, *, due_only: bool = False
) -> list[str]:
    """Accounts whose profile should be asked for: a key never used, or (``due_only``
    False) one not checked for :data:`RECHECK_MS`."""
    now = _now_ms() if now is None else now
    rows = db.execute(
        "SELECT account_id FROM profiles WHERE key IS NOT NULL AND (fetched_key IS NULL"
        " OR fetched_key != key OR (? AND checked_at < ?))",
        (not due_only, now - RECHECK_MS),
    )
    return [str(r[0]) for r in rows]


def save_profile(
    db: sqlite3.Connection,
    account_id: str,
    key: bytes,
    version: int,
    fields: tuple[str, str, bytes] | None,
    now: int | None = None,
) -> None:
    """Record a fetch: ``fields`` (name, about, avatar) opened with ``key`` at ``version``,
    or None when the server had nothing usable (only the check time moves)."""
    now = _now_ms() if now is None else now
    db.execute("INSERT OR IGNORE INTO profiles (account_id) VALUES (?)", (account_id,))
    if fields is None:  # nothing to open with this key: wait for the next check
        db.execute(
            "UPDATE profiles SET checked_at = ?, fetched_key = ? WHERE account_id = ?",
            (now, key, account_id),
        )
        return
    name, about, avatar = fields
    db.execute(
        "UPDATE profiles SET fetched_key = ?, version = ?, name = ?, about = ?, avatar = ?,"
        " checked_at = ? WHERE account_id = ?",
        (key, version, name, about, avatar or None, now, account_id),
    )


def forget_fields(db: sqlite3.Connection, account_id: str) -> None:
    """The profile no longer opens with the key we have (rotated away from us)."""
    db.execute(
        "UPDATE profiles SET name = '', about = '', avatar = NULL, fetched_key = key"
        " WHERE account_id = ?",
        (account_id,),
    )


def stored(db: sqlite3.Connection, account_id: str) -> StoredProfile | None:
    row = db.execute(
        "SELECT name, about, avatar, version, key IS NOT NULL FROM profiles WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        return None
    name, about, avatar, version, has_key = row
    avatar_bytes = bytes(avatar) if avatar is not None else None
    return StoredProfile(
        account_id, str(name), str(about), avatar_bytes, int(version), bool(has_key)
    )


def display_name(db: sqlite3.Connection, account_id: str) -> str | None:
    row = db.execute(
        "SELECT name FROM display_names WHERE account_id = ?", (account_id,)
    ).fetchone()
    return None if row is None else str(row[0])


# ----------------------------------------------------------------------------- sharing


def needs_key(db: sqlite3.Connection, conv_id: str, key: bytes) -> bool:
    row = db.execute("SELECT key FROM profile_shared WHERE conv_id = ?", (conv_id,)).fetchone()
    return row is None or bytes(row[0]) != key


def mark_shared(db: sqlite3.Connection, conv_id: str, key: bytes) -> None:
    db.execute(
        "INSERT INTO profile_shared VALUES (?, ?) ON CONFLICT (conv_id) DO UPDATE"
        " SET key = excluded.key",
        (conv_id, key),
    )


def shareable(db: sqlite3.Connection, me: str) -> list[str]:
    """Conversations this account is in that hold no account it blocks (where a rotated key
    goes)."""
    rows = db.execute(
        "SELECT c.id FROM conversations c WHERE c.is_member = 1 AND c.known = 1"
        " AND NOT EXISTS (SELECT 1 FROM members m JOIN blocked b ON b.account_id = m.account_id"
        " WHERE m.conv_id = c.id AND m.account_id != ?) ORDER BY c.last_activity DESC",
        (me,),
    )
    return [str(r[0]) for r in rows]


def has_blocked_member(db: sqlite3.Connection, conv_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM members m JOIN blocked b ON b.account_id = m.account_id"
        " WHERE m.conv_id = ? LIMIT 1",
        (conv_id,),
    ).fetchone()
    return row is not None


# ----------------------------------------------------------------------------- blocking


def is_blocked(db: sqlite3.Connection, account_id: str) -> bool:
    row = db.execute("SELECT 1 FROM blocked WHERE account_id = ?", (account_id,)).fetchone()
    return row is not None


def set_blocked(db: sqlite3.Connection, account_id: str, blocked: bool) -> None:
    if blocked:
        db.execute("INSERT OR IGNORE INTO blocked VALUES (?)", (account_id,))
    else:
        db.execute("DELETE FROM blocked WHERE account_id = ?", (account_id,))


def replace_blocked(db: sqlite3.Connection, accounts: list[str]) -> None:
    db.execute("DELETE FROM blocked")
    db.executemany("INSERT OR IGNORE INTO blocked VALUES (?)", [(a,) for a in accounts])


def from_blocked(db: sqlite3.Connection, ids: list[str]) -> list[str]:
    """The messages (hex ids) among ``ids`` whose sender this account blocks."""
    found: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found += [
            str(r[0])
            for r in db.execute(
                "SELECT m.id FROM messages m JOIN blocked b ON b.account_id = m.sender_id"  # noqa: S608
                f" WHERE m.id IN ({marks}) AND m.is_own = 0",
                chunk,
            )
        ]
    return found


# ----------------------------------------------------------------------------- receipt times


def record_times(
    db: sqlite3.Connection,
    conv_id: str,
    account_id: str,
    delivered_at: int | None,
    read_at: int | None,
) -> None:
    """When another member's watermarks last moved, as the server said (only moves up)."""
    if delivered_at is None and read_at is None:
        return
    db.execute(
        "INSERT INTO watermark_times VALUES (?, ?, ?, ?) ON CONFLICT (conv_id, account_id)"
        " DO UPDATE SET delivered_at = max(COALESCE(delivered_at, 0),"
        " COALESCE(excluded.delivered_at, 0)), read_at = max(COALESCE(read_at, 0),"
        " COALESCE(excluded.read_at, 0))",
        (conv_id, account_id, delivered_at, read_at),
    )


def times(db: sqlite3.Connection, conv_id: str) -> dict[str, tuple[int | None, int | None]]:
    return {
        str(account): (delivered or None, read or None)
        for account, delivered, read in db.execute(
            "SELECT account_id, delivered_at, read_at FROM watermark_times WHERE conv_id = ?",
            (conv_id,),
        )
    }
