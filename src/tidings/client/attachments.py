"""Attachments in the local store: the ``attachments`` table (schema component ``media``).

A received :class:`~tidings.protocol.content.Media` message stores one row per pointer (key,
digest, blob id and the descriptions), in the same transaction as the message. An own one is
written **before** anything is uploaded, with the path of the file being sent and the upload's
state (``preparing`` → ``uploading`` → ``uploaded``, or ``failed``), the ciphertext's temporary
file and, once known, the blob id: so an upload survives a cut connection and a restart of the
app. ``local_path`` is the plaintext in the profile's media cache (own attachments at once,
received ones once downloaded and verified).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tidings.migrations import migrate
from tidings.protocol.attachment import AttachmentPointer

from .types import Attachment, AttachmentState, Message

#: the client store's ``media`` component (its own schema version)
SCHEMA: tuple[str, ...] = (
    """
    ALTER TABLE attachments ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attachments ADD COLUMN blob_id TEXT;
    ALTER TABLE attachments ADD COLUMN file_name TEXT;
    ALTER TABLE attachments ADD COLUMN state TEXT NOT NULL DEFAULT 'remote';
    ALTER TABLE attachments ADD COLUMN source_path TEXT;
    ALTER TABLE attachments ADD COLUMN cipher_path TEXT;
    ALTER TABLE attachments ADD COLUMN cipher_size INTEGER;
    ALTER TABLE attachments ADD COLUMN fail_reason TEXT;
    CREATE INDEX attachments_state ON attachments (state) WHERE state NOT IN ('remote', 'ready');
    """,
)

_COLUMNS = (
    "id, message_id, kind, mime, size, key, digest, blob_id, width, height, blurhash, duration,"
    " waveform, local_path, file_name, state, source_path, cipher_path, cipher_size, fail_reason"
)


def migrate_schema(db: sqlite3.Connection) -> None:
    migrate(db, SCHEMA, component="media")


@dataclass(frozen=True, slots=True)
class Row:
    """One ``attachments`` row, everything the transfers need."""

    id: str
    message_id: uuid.UUID
    kind: str
    mime: str
    size: int
    key: bytes | None
    digest: bytes | None
    blob_id: str | None
    width: int | None
    height: int | None
    blurhash: str | None
    duration_ms: int | None
    waveform: bytes | None
    local_path: str | None
    file_name: str | None
    state: str
    source_path: str | None
    cipher_path: str | None
    cipher_size: int | None
    fail_reason: str | None

    def pointer(self) -> AttachmentPointer:
        """The pointer of an uploaded attachment (for the message, or a retry)."""
        assert self.blob_id is not None and self.key is not None and self.digest is not None
        return AttachmentPointer(
            blob_id=self.blob_id,
            key=self.key,
            digest=self.digest,
            size=self.size,
            content_type=self.mime,
            kind=self.kind,  # type: ignore[arg-type]  # stored from an AttachmentKind
            file_name=self.file_name,
            width=self.width,
            height=self.height,
            duration_ms=self.duration_ms,
            blurhash=self.blurhash,
            waveform=self.waveform,
        )

    def public(self) -> Attachment:
        path = Path(self.local_path) if self.local_path else None
        state: AttachmentState
        if self.state == "remote" and path is not None and path.exists():
            state = "ready"
        else:
            state = self.state  # type: ignore[assignment]  # written by this module only
        return Attachment(
            id=self.id,
            kind=self.kind,
            content_type=self.mime,
            size=self.size,
            file_name=self.file_name,
            width=self.width,
            height=self.height,
            duration_ms=self.duration_ms,
            blurhash=self.blurhash,
            waveform=tuple(self.waveform) if self.waveform else None,
            state=state,
            path=path if path is not None and path.exists() else None,
        )


def _row(r: tuple[object, ...]) -> Row:
    values = list(r)
    values[1] = uuid.UUID(str(values[1]))
    duration = values[11]
    values[11] = None if duration is None else int(float(str(duration)))
    return Row(*values)  # type: ignore[arg-type]


def rows(db: sqlite3.Connection, message_id: uuid.UUID) -> list[Row]:
    found = db.execute(
        f"SELECT {_COLUMNS} FROM attachments WHERE message_id = ? ORDER BY position",  # noqa: S608
        (message_id.hex,),
    ).fetchall()
    return [_row(r) for r in found]


def rows_of(db: sqlite3.Connection, message_ids: Sequence[uuid.UUID]) -> list[Row]:
    """The rows of all these messages (one statement per 500 messages), in the order of
    ``message_ids``, each message's by position."""
    found: list[Row] = []
    for start in range(0, len(message_ids), 500):
        chunk = [i.hex for i in message_ids[start : start + 500]]
        marks = ",".join("?" * len(chunk))
        found += (
            _row(r)
            for r in db.execute(
                f"SELECT {_COLUMNS} FROM attachments WHERE message_id IN ({marks})"  # noqa: S608
                " ORDER BY message_id, position",
                chunk,
            )
        )
    if len(message_ids) > 1 and found:
        order = {message_id: n for n, message_id in enumerate(message_ids)}
        found.sort(key=lambda r: order[r.message_id])  # stable: positions stay in order
    return found


def row(db: sqlite3.Connection, attachment_id: str) -> Row | None:
    found = db.execute(
        f"SELECT {_COLUMNS} FROM attachments WHERE id = ?",  # noqa: S608
        (attachment_id,),
    ).fetchone()
    return None if found is None else _row(found)


def unfinished_uploads(db: sqlite3.Connection) -> list[uuid.UUID]:
    """Own messages still ``sending`` whose attachments are not all uploaded and sent."""
    found = db.execute(
        "SELECT DISTINCT a.message_id FROM attachments a JOIN messages m ON m.id = a.message_id"
        " WHERE a.state IN ('preparing', 'uploading', 'uploaded') AND m.status = 'sending'"
        " AND m.is_own = 1 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = m.id)"
        " ORDER BY m.created_at"
    ).fetchall()
    return [uuid.UUID(str(r[0])) for r in found]


def save_pointers(
    db: sqlite3.Connection, message_id: uuid.UUID, pointers: Sequence[AttachmentPointer]
) -> None:
    """Store the pointers of a received (or own, sent from another device) message."""
    for position, p in enumerate(pointers):
        db.execute(
            "INSERT OR IGNORE INTO attachments (id, message_id, position, kind, mime, size, key,"
            " digest, blob_id, width, height, blurhash, duration, waveform, file_name, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'remote')",
            (
                f"{message_id.hex}-{position}",
                message_id.hex,
                position,
                p.kind,
                p.content_type,
                p.size,
                p.key,
                p.digest,
                p.blob_id,
                p.width,
                p.height,
                p.blurhash,
                p.duration_ms,
                p.waveform,
                p.file_name,
            ),
        )


def add_outgoing(
    db: sqlite3.Connection,
    message_id: uuid.UUID,
    *,
    kind: str,
    mime: str,
    size: int,
    file_name: str | None,
    source_path: str,
) -> str:
    """The row of an attachment about to be prepared and uploaded; returns its id."""
    attachment_id = f"{message_id.hex}-0"
    db.execute(
        "INSERT INTO attachments (id, message_id, position, kind, mime, size, file_name, state,"
        " source_path) VALUES (?, ?, 0, ?, ?, ?, ?, 'preparing', ?)",
        (attachment_id, message_id.hex, kind, mime, size, file_name, source_path),
    )
    return attachment_id


def update(db: sqlite3.Connection, attachment_id: str, **fields: object) -> None:
    """Set columns of one row (names from this module only)."""
    if "duration_ms" in fields:
        fields["duration"] = fields.pop("duration_ms")
    if "mime" not in fields and "content_type" in fields:
        fields["mime"] = fields.pop("content_type")
    names = ", ".join(f"{name} = ?" for name in fields)
    db.execute(
        f"UPDATE attachments SET {names} WHERE id = ?",  # noqa: S608 - names from this module
        (*fields.values(), attachment_id),
    )


def with_attachments(db: sqlite3.Connection, messages: list[Message]) -> list[Message]:
    """``messages`` with their attachments filled in."""
    if not messages:
        return messages
    ids = [m.id.hex for m in messages]
    found: dict[str, list[Attachment]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for r in db.execute(
            f"SELECT {_COLUMNS} FROM attachments WHERE message_id IN ({marks})"  # noqa: S608
            " ORDER BY message_id, position",
            chunk,
        ):
            found.setdefault(str(r[1]), []).append(_row(r).public())
    if not found:
        return messages
    return [
        dataclasses.replace(m, attachments=tuple(found[m.id.hex])) if m.id.hex in found else m
        for m in messages
    ]
