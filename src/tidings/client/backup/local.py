"""What the device keeps about its vault, in the profile's database (component ``vault``).

``vault_local`` holds the vault key and the wrapped key (the profile's database is the
device's key store: it already holds the identity key). ``vault_uploaded`` is the last
generation the server acknowledged per page id, with the digest of that page's plaintext
(an unchanged page is never re-sealed) and, for history pages, the seq range it covers.
``vault_dirty`` lists the (conversation, span) whose messages changed since their page was
uploaded; triggers on the messages and reactions tables fill it, so every writer of history
marks what it touched without knowing about the vault. ``vault_pruned`` says below which seq a
conversation's rows were removed locally (they are only in the vault), and
``vault_pruned_ids`` where each removed message was: a reaction that arrives for a message no
longer on the device (only its reaction row is stored) marks that message's span, whose
vault copy the uploader then merges with the new reaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from tidings.migrations import migrate

#: messages per history span: span s holds seqs s*SPAN+1 .. (s+1)*SPAN
SPAN = 100
#: pages a span may be split into; page index = span * PARTS + part
PARTS = 1000

SCHEMA = (
    f"""
    CREATE TABLE vault_local (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        vault_key BLOB NOT NULL,
        wrapped BLOB NOT NULL,
        enabled_at INTEGER NOT NULL
    );
    CREATE TABLE vault_uploaded (
        page_id TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        digest BLOB,
        conv_id TEXT,
        span INTEGER,
        first_seq INTEGER,
        last_seq INTEGER
    );
    CREATE INDEX vault_uploaded_span ON vault_uploaded (conv_id, span);
    CREATE TABLE vault_dirty (
        conv_id TEXT NOT NULL,
        span INTEGER NOT NULL,
        n INTEGER NOT NULL DEFAULT 1,           -- changes since; an upload clears only its own
        PRIMARY KEY (conv_id, span)
    ) WITHOUT ROWID;
    CREATE TABLE vault_pruned (
        conv_id TEXT PRIMARY KEY,
        below_seq INTEGER NOT NULL
    );
    CREATE TRIGGER vault_dirty_insert AFTER INSERT ON messages WHEN new.seq IS NOT NULL BEGIN
        INSERT INTO vault_dirty VALUES (new.conv_id, (new.seq - 1) / {SPAN}, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER vault_dirty_update AFTER UPDATE OF seq, status, body, kind ON messages
        WHEN new.seq IS NOT NULL BEGIN
        INSERT INTO vault_dirty VALUES (new.conv_id, (new.seq - 1) / {SPAN}, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER vault_dirty_react AFTER INSERT ON reactions BEGIN
        INSERT INTO vault_dirty SELECT conv_id, (seq - 1) / {SPAN}, 1 FROM messages
            WHERE id = new.message_id AND seq IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER vault_dirty_unreact AFTER DELETE ON reactions BEGIN
        INSERT INTO vault_dirty SELECT conv_id, (seq - 1) / {SPAN}, 1 FROM messages
            WHERE id = old.message_id AND seq IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    """,  # noqa: S608 - SPAN is a constant
    f"""
    CREATE TABLE vault_pruned_ids (
        id TEXT PRIMARY KEY,
        conv_id TEXT NOT NULL,
        seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TRIGGER vault_dirty_react_pruned AFTER INSERT ON reactions
        WHEN NOT EXISTS (SELECT 1 FROM messages WHERE id = new.message_id) BEGIN
        INSERT INTO vault_dirty SELECT conv_id, (seq - 1) / {SPAN}, 1 FROM vault_pruned_ids
            WHERE id = new.message_id ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER vault_dirty_unreact_pruned AFTER DELETE ON reactions
        WHEN NOT EXISTS (SELECT 1 FROM messages WHERE id = old.message_id) BEGIN
        INSERT INTO vault_dirty SELECT conv_id, (seq - 1) / {SPAN}, 1 FROM vault_pruned_ids
            WHERE id = old.message_id ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    """,  # noqa: S608 - SPAN is a constant
)


def install(db: sqlite3.Connection) -> None:
    """Create or migrate the vault tables of a profile database."""
    migrate(db, SCHEMA, component="vault")


@dataclass(frozen=True, slots=True)
class VaultKeys:
    vault_key: bytes = field(repr=False)
    wrapped: bytes


def load_keys(db: sqlite3.Connection) -> VaultKeys | None:
    row = db.execute("SELECT vault_key, wrapped FROM vault_local").fetchone()
    return None if row is None else VaultKeys(bytes(row[0]), bytes(row[1]))


def save_keys(db: sqlite3.Connection, keys: VaultKeys, now: int) -> None:
    db.execute(
        "INSERT OR REPLACE INTO vault_local (id, vault_key, wrapped, enabled_at)"
        " VALUES (1, ?, ?, ?)",
        (keys.vault_key, keys.wrapped, now),
    )


def mark_all_dirty(db: sqlite3.Connection) -> None:
    """Every span with a local message needs uploading (backup just enabled)."""
    db.execute(
        f"INSERT OR IGNORE INTO vault_dirty SELECT DISTINCT conv_id, (seq - 1) / {SPAN}, 1"  # noqa: S608  # a constant
        " FROM messages WHERE seq IS NOT NULL"
    )


def generations(db: sqlite3.Connection) -> dict[str, int]:
    return {
        str(r[0]): int(r[1]) for r in db.execute("SELECT page_id, generation FROM vault_uploaded")
    }


def record_upload(
    db: sqlite3.Connection,
    page_id: str,
    generation: int,
    digest: bytes | None,
    span: tuple[str, int, int, int] | None = None,
) -> None:
    """The server holds ``page_id`` at ``generation``; ``span`` = (conv, span, first, last)."""
    conv_id, index, first, last = span if span is not None else (None, None, None, None)
    db.execute(
        "INSERT OR REPLACE INTO vault_uploaded VALUES (?, ?, ?, ?, ?, ?, ?)",
        (page_id, generation, digest, conv_id, index, first, last),
    )


def pruned_below(db: sqlite3.Connection, conv_id: str) -> int:
    row = db.execute("SELECT below_seq FROM vault_pruned WHERE conv_id = ?", (conv_id,)).fetchone()
    return 0 if row is None else int(row[0])


def span_pages(db: sqlite3.Connection, conv_id: str) -> list[tuple[str, int, int, int]]:
    """(page id, span, first seq, last seq) of every history page of ``conv_id`` known here."""
    return [
        (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
        for r in db.execute(
            "SELECT page_id, span, first_seq, last_seq FROM vault_uploaded WHERE conv_id = ?"
            " AND first_seq IS NOT NULL ORDER BY span, page_id",
            (conv_id,),
        )
    ]
