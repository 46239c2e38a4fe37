"""Local history rows ↔ vault :class:`~.pages.MessageRecord`: what a page holds of a message.

A record keeps the message as the local store has it: seq, sender, time, kind, body, the
system event (``meta``), the reply target, the stored status, every reaction (account id,
emoji, time) and the attachment *pointers* (the attachments rows: id, key, digest, url,
dimensions...; never the blob, which stays on the media server).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import msgspec

from ..store import UNSENT_ORD
from .pages import MessageRecord, Reaction

_COLUMNS = (
    "id, conv_id, seq, sender_id, sender_device, created_at, kind, body, status, meta, reply_to"
)
_ATTACHMENT_COLUMNS = (
    "id, kind, mime, size, key, digest, url, width, height, blurhash, duration, waveform"
)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[list[object]])


def _records(db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> list[MessageRecord]:
    ids = [str(r[0]) for r in rows]
    reactions: dict[str, list[Reaction]] = {}
    attachments: dict[str, list[list[object]]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for message_id, account_id, emoji, at in db.execute(
            "SELECT message_id, account_id, emoji, created_at FROM reactions"  # noqa: S608
            f" WHERE message_id IN ({marks}) ORDER BY created_at, rowid",
            chunk,
        ):
            reactions.setdefault(message_id, []).append(Reaction(account_id, emoji, at))
        for row in db.execute(
            f"SELECT message_id, {_ATTACHMENT_COLUMNS} FROM attachments"  # noqa: S608
            f" WHERE message_id IN ({marks}) ORDER BY rowid",
            chunk,
        ):
            attachments.setdefault(row[0], []).append(list(row[1:]))
    out = []
    for mid, conv, seq, sender, device, ts, kind, body, status, meta, reply in rows:
        pointers = attachments.get(str(mid))
        out.append(
            MessageRecord(
                id=str(mid),
                conv_id=str(conv),
                seq=int(seq) if isinstance(seq, int) else None,
                sender=str(sender),
                sender_device=int(device),  # type: ignore[call-overload]
                ts=int(ts),  # type: ignore[call-overload]
                kind=str(kind),
                body=str(body),
                status=str(status),
                reactions=reactions.get(str(mid), []),
                attachment=_encoder.encode(pointers) if pointers else None,
                reply_to=str(reply) if reply is not None else None,
                meta=bytes(meta) if isinstance(meta, bytes) else None,
            )
        )
    return out


def reactions_of(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[Reaction]]:
    """The reaction rows stored for ``ids`` (also for messages no longer on the device)."""
    found: dict[str, list[Reaction]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for message_id, account_id, emoji, at in db.execute(
            "SELECT message_id, account_id, emoji, created_at FROM reactions"  # noqa: S608
            f" WHERE message_id IN ({marks}) ORDER BY created_at, rowid",
            chunk,
        ):
            found.setdefault(str(message_id), []).append(Reaction(account_id, emoji, at))
    return found


def pending_records(db: sqlite3.Connection) -> list[MessageRecord]:
    """Messages not accepted by the server yet (sending or failed), oldest first."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE seq IS NULL AND is_own"  # noqa: S608
        " AND status IN ('sending', 'failed') ORDER BY created_at, pk"
    ).fetchall()
    return _records(db, rows)


def insert_pending(
    db: sqlite3.Connection, account_id: str, records: Iterable[MessageRecord]
) -> int:
    """Store unsent records after the conversation's unsent rows, as the outbox orders them
    (existing ids are left alone); how many were new."""
    added = 0
    for r in records:
        if r.seq is not None:
            continue
        (order,) = db.execute(
            "SELECT COALESCE(MAX(ord), ?) + 1 FROM messages WHERE conv_id = ? AND ord > ?",
            (UNSENT_ORD, r.conv_id, UNSENT_ORD),
        ).fetchone()
        cur = db.execute(
            "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, sender_device,"
            " is_own, kind, body, meta, reply_to, status, created_at)"
            " VALUES (?, ?, NULL, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
            (
                r.id, r.conv_id, order, account_id, r.sender_device, r.kind, r.body, r.meta,
                r.reply_to, r.status, r.ts,
            ),
        )  # fmt: skip
        added += max(cur.rowcount, 0)
    return added


def span_records(
    db: sqlite3.Connection, conv_id: str, first: int, last: int
) -> list[MessageRecord]:
    """The local messages of ``conv_id`` with seq in [first, last], in seq order."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE conv_id = ? AND seq BETWEEN ? AND ?"  # noqa: S608
        " ORDER BY seq",
        (conv_id, first, last),
    ).fetchall()
    return _records(db, rows)


def insert_records(
    db: sqlite3.Connection, account_id: str, records: Iterable[MessageRecord]
) -> int:
    """Store records as local messages (existing ids are left alone); how many were new."""
    added = 0
    for r in records:
        cur = db.execute(
            "INSERT OR IGNORE INTO messages (id, conv_id, seq, ord, sender_id, sender_device,"
            " is_own, kind, body, meta, reply_to, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.id,
                r.conv_id,
                r.seq,
                r.seq,
                r.sender,
                r.sender_device,
                r.sender == account_id,
                r.kind,
                r.body,
                r.meta,
                r.reply_to,
                r.status,
                r.ts,
            ),
        )
        if cur.rowcount <= 0:
            continue
        added += 1
        db.executemany(
            "INSERT OR IGNORE INTO reactions VALUES (?, ?, ?, ?)",
            [(r.id, x.sender, x.emoji, x.ts) for x in r.reactions],
        )
        if r.attachment:
            marks = ",".join("?" * 13)
            db.executemany(
                f"INSERT OR IGNORE INTO attachments (message_id, {_ATTACHMENT_COLUMNS})"  # noqa: S608
                f" VALUES ({marks})",
                [(r.id, *row) for row in _decoder.decode(r.attachment)],
            )
    return added
