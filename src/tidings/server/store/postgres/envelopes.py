"""Stored envelopes, their seq, and the per-device pending queues that fan them out."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from tidings.protocol import Envelope, ErrorCode, SystemEvent, encode
from tidings.server.domain import Refused
from tidings.server.store.postgres.database import Connection, Database, Retry

ENVELOPE_COLUMNS = "conv_id, seq, id, sender, sender_device, ts, kind, payload, mentions"
#: the same, of the envelopes table aliased ``e``
_E_ENVELOPE_COLUMNS = ", ".join(f"e.{c}" for c in ENVELOPE_COLUMNS.split(", "))
#: An envelope of a direct conversation from an account the reader (``$1``) blocked is not
#: for the reader: no pending row is made for it and a Fetch leaves it out (the "social"
#: component's blocks table; docs/e2ee.md, blocking).
_NOT_BLOCKED = (
    "NOT (e.kind = 'msg' AND EXISTS (SELECT 1 FROM blocks b JOIN conversations c"
    " ON c.id = e.conv_id AND c.kind = 'direct' WHERE b.blocker = $1 AND b.blocked = e.sender))"
)
#: JSON lists of strings (mentions, refused addresses)
strings_decoder = msgspec.json.Decoder(list[str])


class Envelopes(Database):
    async def envelopes(
        self, conv_id: str, after: int, limit: int, device: tuple[str, int] | None = None
    ) -> list[Envelope]:
        account_id, device_id = device if device is not None else ("", 0)

        async def q(conn: Connection) -> list[Envelope]:
            rows = await conn.fetch(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM envelopes e"  # noqa: S608  # constant column list
                " LEFT JOIN pending p ON p.account_id = $1 AND p.device_id = $2"
                " AND p.conv_id = e.conv_id AND p.seq = e.seq"
                " WHERE e.conv_id = $3 AND e.seq > $4 AND e.dropped = 0"
                f" AND {_NOT_BLOCKED} ORDER BY e.seq LIMIT $5",
                account_id,
                device_id,
                conv_id,
                after,
                limit,
            )
            return [envelope_of(row) for row in rows]

        return await self._read(q)

    async def pending(
        self, account_id: str, device_id: int, after: tuple[str, int], limit: int
    ) -> list[Envelope]:
        async def q(conn: Connection) -> list[Envelope]:
            rows = await conn.fetch(
                f"SELECT {_E_ENVELOPE_COLUMNS}, p.payload FROM pending p"  # noqa: S608  # constant column list
                " JOIN envelopes e ON e.conv_id = p.conv_id AND e.seq = p.seq"
                " WHERE p.account_id = $1 AND p.device_id = $2 AND (p.conv_id, p.seq) > ($3, $4)"
                " ORDER BY p.conv_id, p.seq LIMIT $5",
                account_id,
                device_id,
                after[0],
                after[1],
                limit,
            )
            return [envelope_of(row) for row in rows]

        return await self._read(q)

    async def purge_pending(self, older_than: int) -> int:
        async def tx(conn: Connection) -> int:
            purged = _count(
                await conn.execute("DELETE FROM pending WHERE queued_at < $1", older_than)
            )
            purged += _count(
                await conn.execute("DELETE FROM device_queue WHERE ts < $1", older_than)
            )
            await conn.execute("DELETE FROM device_sends WHERE ts < $1", older_than)
            return purged

        return await self._write(tx)

    async def collect_envelopes(self, older_than: int, limit: int) -> int:
        return await self._write(lambda conn: collect(conn, older_than, limit))

    async def stored_bytes(self, account_id: str) -> int:
        async def q(conn: Connection) -> int:
            found = await conn.fetchval(
                "SELECT stored_bytes FROM accounts WHERE id = $1", account_id
            )
            return 0 if found is None else int(found)

        return await self._read(q)


# Functions below run inside a transaction of the caller.


def _count(status: str) -> int:
    """Rows a command changed, from its status (``DELETE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


def envelope_of(row: Iterable[Any]) -> Envelope:  # records are untyped
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


async def envelope_at(conn: Connection, conv_id: str, seq: int) -> Envelope:
    row = await conn.fetchrow(
        f"SELECT {ENVELOPE_COLUMNS} FROM envelopes WHERE conv_id = $1 AND seq = $2",  # noqa: S608  # constant column list
        conv_id,
        seq,
    )
    if row is None:
        raise LookupError(f"envelope {conv_id}/{seq} missing")
    return envelope_of(row)


async def next_seq(conn: Connection, conv_id: str) -> int:
    """Take the conversation's next seq, locking its row until the transaction ends. Raises
    NOT_FOUND if there is no such conversation."""
    seq = await conn.fetchval(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
        conv_id,
    )
    if seq is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    return int(seq)


def stored_size(payload: bytes, mentions: Sequence[str], extra: int = 0) -> int:
    """Bytes an envelope is charged to its sender's quota (as the SQLite store counts them)."""
    return len(payload) + sum(len(m) + 3 for m in mentions) + extra


def over_quota(quota: int) -> Refused:
    return Refused(
        ErrorCode.QUOTA_EXCEEDED,
        f"over the storage quota of {quota} bytes: sent again once recipients caught up",
    )


async def store_envelope(
    conn: Connection,
    envelope: Envelope,
    *,
    skip_device: tuple[str, int] | None,
    extra_size: int = 0,
    quota: int = 0,
) -> set[str]:
    """Insert the envelope and queue it for every device of every current member (except
    ``skip_device``), and charge its size (plus ``extra_size``) to its sender's stored bytes
    (a message's, not a system envelope's): refused with QUOTA_EXCEEDED, in the same
    statement, if that would pass ``quota`` (> 0). Returns the accounts it was queued for.
    Raises :class:`Retry` if a concurrent transaction stored the same (sender, id) first."""
    size = (
        0
        if envelope.kind == "system"
        else stored_size(envelope.payload, envelope.mentions, extra_size)
    )
    charged = await conn.fetchval(
        "UPDATE accounts SET stored_bytes = stored_bytes + $2 WHERE id = $1"
        " AND ($3 <= 0 OR stored_bytes + $2 <= $3) RETURNING 1",
        envelope.sender,
        size,
        quota,
    )
    if charged is None and quota > 0:
        raise over_quota(quota)
    stored = await conn.fetchval(
        f"INSERT INTO envelopes ({ENVELOPE_COLUMNS}, size)"  # noqa: S608  # constant column list
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (sender, id) DO NOTHING RETURNING seq",
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
    )
    if stored is None:
        raise Retry("the same message was stored concurrently")
    skip_account, skip_id = skip_device if skip_device is not None else ("", 0)
    rows = await conn.fetch(
        "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at)"
        " SELECT d.account_id, d.device_id, $1, $2, $3 FROM members m"
        " JOIN devices d ON d.account_id = m.account_id"
        " WHERE m.conv_id = $1 AND NOT (d.account_id = $4 AND d.device_id = $5)"
        " AND NOT ($6 = 'msg' AND EXISTS (SELECT 1 FROM blocks b JOIN conversations c"
        " ON c.id = m.conv_id AND c.kind = 'direct'"
        " WHERE b.blocker = m.account_id AND b.blocked = $7))"
        " RETURNING account_id",
        envelope.conv,
        envelope.seq,
        envelope.ts,
        skip_account,
        skip_id,
        envelope.kind,
        envelope.sender,
    )
    return {row[0] for row in rows}


async def append_system(
    conn: Connection,
    conv_id: str,
    event: SystemEvent,
    event_id: uuid.UUID,
    actor_device: int,
    now: int,
) -> Envelope:
    """Write a system envelope for every device of every current member, the actor's device
    included."""
    envelope = Envelope(
        conv=conv_id,
        seq=await next_seq(conn, conv_id),
        id=event_id,
        sender=event.actor,
        sender_device=actor_device,
        ts=now,
        payload=encode(event),
        kind="system",
    )
    await store_envelope(conn, envelope, skip_device=None)
    return envelope


async def collect(conn: Connection, older_than: int, limit: int) -> int:
    """Up to ``limit`` envelopes: first those past the retention period go with their pending
    entries, then those every member device has acked lose their body (see
    :meth:`tidings.server.store.base.Store.collect_envelopes`). A conversation a Send is
    writing to right now is skipped (``SKIP LOCKED``) until the next run. The senders' stored
    bytes are given back at the end, in account order."""
    done = 0
    sizes: list[tuple[str, int]] = []
    old = await conn.fetch(
        "SELECT c.id FROM conversations c WHERE (SELECT e.ts FROM envelopes e"
        " WHERE e.conv_id = c.id ORDER BY e.seq LIMIT 1) < $1 ORDER BY c.id"
        " FOR UPDATE SKIP LOCKED",
        older_than,
    )
    for (conv_id,) in old:
        if done >= limit:
            break
        rows = await conn.fetch(
            "SELECT seq, ts, sender, size FROM envelopes WHERE conv_id = $1 ORDER BY seq LIMIT $2",
            conv_id,
            limit - done,
        )
        gone = list(itertools.takewhile(lambda row: row[1] < older_than, rows))
        if not gone:
            continue
        bound = gone[-1][0]
        await conn.execute("DELETE FROM envelopes WHERE conv_id = $1 AND seq <= $2", conv_id, bound)
        await conn.execute("DELETE FROM pending WHERE conv_id = $1 AND seq <= $2", conv_id, bound)
        await conn.execute(
            "UPDATE conversations SET collected_seq = greatest(collected_seq, $2) WHERE id = $1",
            conv_id,
            bound,
        )
        sizes += [(row[2], row[3]) for row in gone]
        done += len(gone)
    if done < limit:
        done += await _collect_acked(conn, limit - done, sizes)
    await _uncharge(conn, sizes)
    return done


async def _collect_acked(conn: Connection, limit: int, sizes: list[tuple[str, int]]) -> int:
    """Drop the bodies every member device has acked: in each conversation, from the
    collector's mark up, while no device has the seq pending and every member but the sender
    has it delivered."""
    done = 0
    marked = await conn.fetch(
        "SELECT id, collected_seq, last_seq FROM conversations WHERE last_seq > collected_seq"
        " ORDER BY id FOR UPDATE SKIP LOCKED"
    )
    for conv_id, low, head in marked:
        if done >= limit:
            break
        marks = sorted(
            (row[0], row[1])
            for row in await conn.fetch(
                "SELECT delivered, account_id FROM members WHERE conv_id = $1", conv_id
            )
        )
        if not marks:
            continue
        (lowest, laggard), second = marks[0], marks[1][0] if len(marks) > 1 else head
        waiting = await conn.fetchval(
            "SELECT min(seq) FROM pending WHERE conv_id = $1 AND seq > $2", conv_id, low
        )
        stop = min(second, head) if waiting is None else min(second, head, waiting - 1)
        if stop <= low:
            continue
        rows = await conn.fetch(
            "SELECT seq, sender, size FROM envelopes WHERE conv_id = $1 AND seq > $2"
            " AND seq <= $3 ORDER BY seq LIMIT $4",
            conv_id,
            low,
            stop,
            limit - done,
        )
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
        await conn.execute(
            "UPDATE envelopes SET payload = ''::bytea, mentions = NULL, size = 0, dropped = 1"
            " WHERE conv_id = $1 AND seq > $2 AND seq <= $3 AND dropped = 0",
            conv_id,
            low,
            upto,
        )
        await conn.execute(
            "UPDATE conversations SET collected_seq = $2 WHERE id = $1", conv_id, upto
        )
        sizes += [(row[1], row[2]) for row in taken]
        done += len(taken)
    return done


async def _uncharge(conn: Connection, sizes: list[tuple[str, int]]) -> None:
    by_sender: dict[str, int] = {}
    for sender, size in sizes:
        by_sender[sender] = by_sender.get(sender, 0) + size
    await conn.executemany(
        "UPDATE accounts SET stored_bytes = greatest(0, stored_bytes - $1) WHERE id = $2",
        [(size, sender) for sender, size in sorted(by_sender.items()) if size],
    )
