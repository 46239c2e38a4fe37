"""Editing a sent message and deleting it, for everyone or only here, in the local store.

Content :class:`~tidings.protocol.content.Edit` / :class:`~tidings.protocol.content.Delete`
names its target message; a receiver applies it only when it comes from the target's sender,
in the same conversation, to a text that is not deleted, within the window (edits
:data:`EDIT_WINDOW_MS`, deletions :data:`DELETE_WINDOW_MS`, measured between the server times
of the target and of the edit). Anything else is dropped without a trace.

An edit keeps the text it replaces in ``message_edits`` (the history of edits) and sets
``edited_at``; the FTS index follows the new text (the store's triggers). A deletion for
everyone empties the text and drops its edit history and reactions, so nothing of it is left
in the store or the index; the row stays as a "message deleted" line. Deleting for me removes
the row (and with it the index entry) and leaves a tombstone so a replayed copy is not stored
again.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from dataclasses import dataclass

from tidings.migrations import migrate
from tidings.protocol import Envelope
from tidings.protocol.content import DELETE_WINDOW_MS, EDIT_WINDOW_MS, Delete, Edit

from ..types import Message

#: the client store's "everyday" component (its own schema version, beside the main steps)
SCHEMA = (
    """
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_edits (
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL                       -- when this text was written (ms)
);
CREATE INDEX message_edits_message ON message_edits (message_id);
CREATE TABLE message_tombstones (id TEXT PRIMARY KEY);
CREATE TRIGGER messages_tombstone BEFORE INSERT ON messages
    WHEN EXISTS (SELECT 1 FROM message_tombstones WHERE id = new.id)
BEGIN
    SELECT RAISE(IGNORE);
END;
CREATE TABLE client_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
""",
)


def migrate_schema(db: sqlite3.Connection) -> None:
    migrate(db, SCHEMA, component="everyday")


#: what a message deleted for everyone shows instead of its text
DELETED_BODY = "This message was deleted"


@dataclass(frozen=True)
class EditRecord:
    """One earlier text of an edited message."""

    body: str
    #: when that text was written (ms)
    at: int


def _target(db: sqlite3.Connection, target: uuid.UUID) -> tuple[str, str, int, str, int] | None:
    row = db.execute(
        "SELECT conv_id, sender_id, created_at, kind, deleted FROM messages WHERE id = ?",
        (target.hex,),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]), str(row[3]), row[4])


def allowed(
    db: sqlite3.Connection, content: Edit | Delete, conv_id: str, sender: str, at: int
) -> bool:
    """Whether ``sender`` may apply ``content`` in ``conv_id`` at time ``at`` (ms)."""
    if content.target is None:
        return False
    found = _target(db, content.target)
    if found is None:
        return False
    target_conv, target_sender, created_at, kind, deleted = found
    window = EDIT_WINDOW_MS if isinstance(content, Edit) else DELETE_WINDOW_MS
    return (
        target_conv == conv_id
        and target_sender == sender
        and kind == "text"
        and not deleted
        and at - created_at <= window
    )


def apply(
    db: sqlite3.Connection, content: Edit | Delete, at: int, updated: list[uuid.UUID]
) -> None:
    """Apply an allowed edit or deletion written at ``at`` (ms); the target's id goes to
    ``updated``."""
    assert content.target is not None  # checked by allowed()
    target = content.target.hex
    if isinstance(content, Edit):
        if not content.body.strip():
            return
        db.execute(
            "INSERT INTO message_edits SELECT id, body, COALESCE(edited_at, created_at)"
            " FROM messages WHERE id = ?",
            (target,),
        )
        db.execute(
            "UPDATE messages SET body = ?, edited_at = ? WHERE id = ?",
            (content.body, at, target),
        )
    else:
        db.execute("UPDATE messages SET body = '', deleted = 1 WHERE id = ?", (target,))
        db.execute("DELETE FROM message_edits WHERE message_id = ?", (target,))
        db.execute("DELETE FROM reactions WHERE message_id = ?", (target,))
    updated.append(content.target)


def apply_received(
    db: sqlite3.Connection, env: Envelope, content: Edit | Delete, updated: list[uuid.UUID]
) -> None:
    """An edit or deletion that arrived in envelope ``env``: applied if it is allowed."""
    if allowed(db, content, env.conv, env.sender, env.ts):
        apply(db, content, env.ts, updated)


def delete_for_me(db: sqlite3.Connection, message_id: uuid.UUID) -> str | None:
    """Remove a message from this device only; its conversation id, or None if unknown."""
    row = db.execute("SELECT conv_id FROM messages WHERE id = ?", (message_id.hex,)).fetchone()
    if row is None:
        return None
    db.execute("INSERT OR IGNORE INTO message_tombstones VALUES (?)", (message_id.hex,))
    db.execute("DELETE FROM messages WHERE id = ?", (message_id.hex,))
    db.execute("DELETE FROM message_edits WHERE message_id = ?", (message_id.hex,))
    db.execute("DELETE FROM reactions WHERE message_id = ?", (message_id.hex,))
    db.execute("DELETE FROM outbox WHERE id = ?", (message_id.hex,))
    return str(row[0])


def history(db: sqlite3.Connection, message_id: uuid.UUID) -> list[EditRecord]:
    """The earlier texts of a message, oldest first (empty if it was never edited)."""
    return [
        EditRecord(str(body), int(at))
        for body, at in db.execute(
            "SELECT body, at FROM message_edits WHERE message_id = ? ORDER BY at, rowid",
            (message_id.hex,),
        )
    ]


def flags(db: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[int | None, bool]]:
    """(edited_at, deleted) of the messages with these hex ids."""
    found: dict[str, tuple[int | None, bool]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for mid, edited_at, deleted in db.execute(
            f"SELECT id, edited_at, deleted FROM messages WHERE id IN ({marks})",  # noqa: S608
            chunk,
        ):
            found[str(mid)] = (edited_at, bool(deleted))
    return found


def with_flags(
    db: sqlite3.Connection,
    messages: list[Message],
    known: dict[str, tuple[int | None, bool]] | None = None,
) -> list[Message]:
    """``messages`` with ``edited``/``edited_at``/``deleted`` filled in from the store, or
    from ``known`` (:func:`flags` as the caller read it already); a deleted one shows
    :data:`DELETED_BODY`."""
    if not messages:
        return messages
    found = flags(db, [m.id.hex for m in messages]) if known is None else known
    out: list[Message] = []
    for message in messages:
        edited_at, deleted = found.get(message.id.hex, (None, False))
        if deleted:
            message = dataclasses.replace(
                message, body=DELETED_BODY, deleted=True, reactions=(), reply_preview=None
            )
        elif edited_at is not None:
            message = dataclasses.replace(message, edited=True, edited_at=edited_at)
        out.append(message)
    return out
