"""Stored envelopes, their seq, and the per-device pending queues that fan them out."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.protocol import Envelope, ErrorCode, SystemEvent, encode
from tidings.server.domain import Refused
from tidings.server.store.sqlite.writer import Database

ENVELOPE_COLUMNS = "conv_id, seq, id, sender, sender_device, ts, kind, payload, mentions"
#: the same, of the envelopes table aliased ``e``
_E_ENVELOPE_COLUMNS = ", ".join(f"e.{c}" for c in ENVELOPE_COLUMNS.split(", "))
#: An envelope of a direct conversation from an account the reader (parameter) blocked is
#: not for the reader: no pending row is made for it and a Fetch leaves it out (the
#: "social" component's blocks table; docs/e2ee.md, blocking).
_NOT_BLOCKED = (
    "NOT (e.kind = 'msg' AND EXISTS (SELECT 1 FROM blocks b JOIN conversations c"
    " ON c.id = e.conv_id AND c.kind = 'direct' WHERE b.blocker = ? AND b.blocked = e.sender))"
)
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
                " WHERE e.conv_id = ? AND e.seq > ? AND NOT e.dropped"
                f" AND {_NOT_BLOCKED} ORDER BY e.seq LIMIT ?",
                (account_id, device_id, conv_id, after, account_id, limit),
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

    async def collect_envelopes(self, older_than: int, limit: int) -> int:
        return await self._write(lambda conn: collect(conn, older_than, limit))

    async def stored_bytes(self, account_id: str) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT stored_bytes FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(q)


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


def stored_size(payload: bytes, mentions: Sequence[str], extra: int = 0) -> int:
    """Bytes an envelope is charged to its sender's quota: payload and mentions, plus
    ``extra`` (the per-device ciphertexts stored with it)."""
    return len(payload) + sum(len(m) + 3 for m in mentions) + extra


def check_quota(conn: sqlite3.Connection, account: str, size: int, quota: int) -> None:
    """Raise QUOTA_EXCEEDED if ``account`` may not store ``size`` more bytes (``quota`` 0:
    unlimited). Reads only."""
    if quota <= 0:
        return
    row = conn.execute("SELECT stored_bytes FROM accounts WHERE id = ?", (account,)).fetchone()
    if row is not None and row[0] + size > quota:
        raise over_quota(quota)


def over_quota(quota: int) -> Refused:
    """The refusal of a message that would take its sender over ``quota`` stored bytes."""
    return Refused(
        ErrorCode.QUOTA_EXCEEDED,
        f"over the storage quota of {quota} bytes: sent again once recipients caught up",
    )


def store_envelope(
    conn: sqlite3.Connection,
    envelope: Envelope,
    *,
    skip_device: tuple[str, int] | None,
    extra_size: int = 0,
) -> set[str]:
    """Insert the envelope and queue it for every device of every current member (except
    ``skip_device``), and charge its size (plus ``extra_size``: the per-device ciphertexts)
    to its sender's stored bytes (a message's, not a system envelope's). Returns the accounts
    it was queued for."""
    # What members send counts; the server's own system envelopes do not.
    size = (
        0
        if envelope.kind == "system"
        else stored_size(envelope.payload, envelope.mentions, extra_size)
    )
    conn.execute(
        f"INSERT INTO envelopes ({ENVELOPE_COLUMNS}, size)"  # noqa: S608  # constant column list
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            size,
        ),
    )
    conn.execute(
        "UPDATE accounts SET stored_bytes = stored_bytes + ? WHERE id = ?",
        (size, envelope.sender),
    )
    skip_account, skip_id = skip_device if skip_device is not None else ("", 0)
    rows = conn.execute(
        "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at)"
        " SELECT d.account_id, d.device_id, ?, ?, ? FROM members m"
        " JOIN devices d ON d.account_id = m.account_id"
        " WHERE m.conv_id = ? AND NOT (d.account_id = ? AND d.device_id = ?)"
        " AND NOT (? = 'msg' AND EXISTS (SELECT 1 FROM blocks b JOIN conversations c"
        " ON c.id = m.conv_id AND c.kind = 'direct'"
        " WHERE b.blocker = m.account_id AND b.blocked = ?))"
        " RETURNING account_id",
        (
            envelope.conv,
            envelope.seq,
            envelope.ts,
            envelope.conv,
            skip_account,
            skip_id,
            envelope.kind,
            envelope.sender,
        ),
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


def collect(conn: sqlite3.Connection, older_than: int, limit: int) -> int:
    """Up to ``limit`` envelopes: first those past the retention period (``ts < older_than``)
    go with their pending entries, then those every member device has acked lose their body.
    Each uncharges its sender's stored bytes. Returns how many envelopes were collected."""
    done = 0
    # Retention: the oldest envelopes of each conversation (seq order is time order, give or
    # take concurrent Sends: an envelope a little out of order waits for the next run).
    old = conn.execute(
        "SELECT c.id FROM conversations c WHERE (SELECT e.ts FROM envelopes e"
        " WHERE e.conv_id = c.id ORDER BY e.seq LIMIT 1) < ?",
        (older_than,),
    ).fetchall()
    for (conv_id,) in old:
        if done >= limit:
            return done
        rows = conn.execute(
            "SELECT seq, ts, sender, size FROM envelopes WHERE conv_id = ? ORDER BY seq LIMIT ?",
            (conv_id, limit - done),
        ).fetchall()
        gone = list(itertools.takewhile(lambda row: row[1] < older_than, rows))
        if not gone:
            continue
        bound = gone[-1][0]
        conn.execute("DELETE FROM envelopes WHERE conv_id = ? AND seq <= ?", (conv_id, bound))
        conn.execute("DELETE FROM pending WHERE conv_id = ? AND seq <= ?", (conv_id, bound))
        conn.execute(
            "UPDATE conversations SET collected_seq = max(collected_seq, ?) WHERE id = ?",
            (bound, conv_id),
        )
        _uncharge(conn, [(sender, size) for _, _, sender, size in gone])
        done += len(gone)
    # Acked by all: in each conversation, from the collector's mark up, while no device has
    # the seq pending and every member but the sender has it delivered.
    marked = conn.execute(
        "SELECT id, collected_seq, last_seq FROM conversations WHERE last_seq > collected_seq"
    ).fetchall()
    for conv_id, low, head in marked:
        if done >= limit:
            return done
        marks = sorted(
            conn.execute(
                "SELECT delivered, account_id FROM members WHERE conv_id = ?", (conv_id,)
            ).fetchall()
        )
        if not marks:
            continue
        (lowest, laggard), second = marks[0], marks[1][0] if len(marks) > 1 else head
        waiting = conn.execute(
            "SELECT min(seq) FROM pending WHERE conv_id = ? AND seq > ?", (conv_id, low)
        ).fetchone()[0]
        stop = min(second, head) if waiting is None else min(second, head, waiting - 1)
        if stop <= low:
            continue
        rows = conn.execute(
            "SELECT seq, sender, size FROM envelopes WHERE conv_id = ? AND seq > ? AND seq <= ?"
            " ORDER BY seq LIMIT ?",
            (conv_id, low, stop, limit - done),
        ).fetchall()
        # Above the lowest mark only the laggard's own messages: it has those.
        taken = []
        for row in rows:
            if row[0] > lowest and row[1] != laggard:
                break
            taken.append(row)
        if len(taken) == len(rows) and len(rows) < limit - done:
            upto = stop  # every seq up to stop is collected (or was deleted before)
        else:
            upto = taken[-1][0] if taken else low
        if upto <= low:
            continue
        conn.execute(
            "UPDATE envelopes SET payload = x'', mentions = NULL, size = 0, dropped = 1"
            " WHERE conv_id = ? AND seq > ? AND seq <= ? AND NOT dropped",
            (conv_id, low, upto),
        )
        conn.execute("UPDATE conversations SET collected_seq = ? WHERE id = ?", (upto, conv_id))
        _uncharge(conn, [(sender, size) for _, sender, size in taken])
        done += len(taken)
    return done


def _uncharge(conn: sqlite3.Connection, sizes: list[tuple[str, int]]) -> None:
    by_sender: dict[str, int] = {}
    for sender, size in sizes:
        by_sender[sender] = by_sender.get(sender, 0) + size
    conn.executemany(
        "UPDATE accounts SET stored_bytes = max(0, stored_bytes - ?) WHERE id = ?",
        [(size, sender) for sender, size in by_sender.items() if size],
    )
