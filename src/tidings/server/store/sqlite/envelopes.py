"""Stored envelopes, their seq, and the per-device pending queues that fan them out."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import msgspec

from tidings.protocol import Envelope, ErrorCode, SystemEvent, encode
from tidings.server.domain import Refused
from tidings.server.store.sqlite.writer import Database

ENVELOPE_COLUMNS = "conv_id, seq, id, sender, sender_device, ts, kind, payload, mentions"
#: the same, of the envelopes table aliased ``e``
_E_ENVELOPE_COLUMNS = ", ".join(f"e.{c}" for c in ENVELOPE_COLUMNS.split(", "))
#: JSON lists of strings (mentions, refused addresses)
strings_decoder = msgspec.json.Decoder(list[str])


class Envelopes(Database):
    async def envelopes(
        self, conv_id: str, after: int, limit: int, device: tuple[str, int] | None = None
    ) -> list[Envelope]:
        account_id, device_id = device if device is not None else ("", 0)

        def q(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM envelopes e"  # noqa: S608  # constant column list
                " LEFT JOIN pending p ON p.account_id = ? AND p.device_id = ?"
                " AND p.conv_id = e.conv_id AND p.seq = e.seq"
                " WHERE e.conv_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
                (account_id, device_id, conv_id, after, limit),
            )
            return [envelope_of(row) for row in rows]

        return await self._read(q)

    async def pending(
        self, account_id: str, device_id: int, after: tuple[str, int], limit: int
    ) -> list[Envelope]:
        def q(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM pending p"  # noqa: S608  # constant column list
                " JOIN envelopes e ON e.conv_id = p.conv_id AND e.seq = p.seq"
                " WHERE p.account_id = ? AND p.device_id = ? AND (p.conv_id, p.seq) > (?, ?)"
                " ORDER BY p.conv_id, p.seq LIMIT ?",
                (account_id, device_id, after[0], after[1], limit),
            )
            return [envelope_of(row) for row in rows]

        return await self._read(q)

    async def purge_pending(self, older_than: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            purged = conn.execute("DELETE FROM pending WHERE queued_at < ?", (older_than,)).rowcount
            purged += conn.execute("DELETE FROM device_queue WHERE ts < ?", (older_than,)).rowcount
            conn.execute("DELETE FROM device_sends WHERE ts < ?", (older_than,))
            return purged

        return await self._write(tx)


# Functions below run on the writer thread (or a reader) inside a transaction.


def envelope_of(row: tuple[Any, ...]) -> Envelope:  # sqlite3 rows are untyped
    conv, seq, raw_id, sender, sender_device, ts, kind, payload, mentions, *own = row
    return Envelope(
        conv=conv,
        seq=seq,
        id=uuid.UUID(bytes=raw_id),
        sender=sender,
        sender_device=sender_device,
        ts=ts,
        payload=payload,
        kind="system" if kind == "system" else "msg",
        mentions=strings_decoder.decode(mentions) if mentions else [],
        device_payload=own[0] if own and own[0] is not None else b"",
    )


def envelope_at(conn: sqlite3.Connection, conv_id: str, seq: int) -> Envelope:
    row = conn.execute(
        f"SELECT {ENVELOPE_COLUMNS} FROM envelopes WHERE conv_id = ? AND seq = ?",  # noqa: S608  # constant column list
        (conv_id, seq),
    ).fetchone()
    if row is None:
        raise LookupError(f"envelope {conv_id}/{seq} missing")
    return envelope_of(row)


def next_seq(conn: sqlite3.Connection, conv_id: str) -> int:
    """Take the conversation's next seq. Raises NOT_FOUND if there is no such conversation."""
    row = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
        (conv_id,),
    ).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    return int(row[0])


def store_envelope(
    conn: sqlite3.Connection, envelope: Envelope, *, skip_device: tuple[str, int] | None
) -> set[str]:
    """Insert the envelope and queue it for every device of every current member (except
    ``skip_device``). Returns the accounts it was queued for."""
    conn.execute(
        f"INSERT INTO envelopes ({ENVELOPE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608  # constant column list
        (
            envelope.conv,
            envelope.seq,
            envelope.id.bytes,
            envelope.sender,
            envelope.sender_device,
            envelope.ts,
            envelope.kind,
            envelope.payload,
            msgspec.json.encode(envelope.mentions).decode() if envelope.mentions else None,
        ),
    )
    skip_account, skip_id = skip_device if skip_device is not None else ("", 0)
    rows = conn.execute(
        "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at)"
        " SELECT d.account_id, d.device_id, ?, ?, ? FROM members m"
        " JOIN devices d ON d.account_id = m.account_id"
        " WHERE m.conv_id = ? AND NOT (d.account_id = ? AND d.device_id = ?)"
        " RETURNING account_id",
        (envelope.conv, envelope.seq, envelope.ts, envelope.conv, skip_account, skip_id),
    )
    return {account for (account,) in rows}


def append_system(
    conn: sqlite3.Connection,
    conv_id: str,
    event: SystemEvent,
    event_id: uuid.UUID,
    actor_device: int,
    now: int,
) -> Envelope:
    """Write a system envelope for every device of every current member, the actor's device
    included (it learns of the change through the REST answer, but its stream needs it too)."""
    envelope = Envelope(
        conv=conv_id,
        seq=next_seq(conn, conv_id),
        id=event_id,
        sender=event.actor,
        sender_device=actor_device,
        ts=now,
        payload=encode(event),
        kind="system",
    )
    store_envelope(conn, envelope, skip_device=None)
    return envelope
