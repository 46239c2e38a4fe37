"""Receipts: the members' delivered and read watermarks."""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Mapping

import msgspec

from tidings.protocol import Watermark
from tidings.server.domain import WatermarkMove
from tidings.server.domain.conversations import raise_marks
from tidings.server.store.sqlite.conversations import require_member
from tidings.server.store.sqlite.writer import Database


class Receipts(Database):
    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        item = _Ack(account_id, device_id, list(upto.items()), now)
        moves: list[WatermarkMove] = await self._write_batched(ack_many, item)
        return moves

    async def mark_read(
        self, account_id: str, conv_id: str, seq: int, now: int
    ) -> WatermarkMove | None:
        def tx(conn: sqlite3.Connection) -> WatermarkMove | None:
            require_member(conn, conv_id, account_id)
            return _raise_watermarks(conn, conv_id, account_id, delivered=seq, read=seq, now=now)

        return await self._write(tx)

    async def watermarks(self, conv_id: str) -> list[Watermark]:
        def q(conn: sqlite3.Connection) -> list[Watermark]:
            rows = conn.execute(
                "SELECT conv_id, account_id, delivered, read, NULLIF(delivered_at, 0),"
                " NULLIF(read_at, 0) FROM members WHERE conv_id = ? ORDER BY joined_seq, rowid",
                (conv_id,),
            )
            return [Watermark(*row) for row in rows]

        return await self._read(q)

    async def welcome_watermarks(
        self, account_id: str, device_id: int, now: int
    ) -> list[Watermark]:
        def tx(conn: sqlite3.Connection) -> list[Watermark]:
            key = (account_id, device_id)
            row = conn.execute(
                "SELECT welcomed_at FROM devices WHERE account_id = ? AND device_id = ?", key
            ).fetchone()
            since = 0 if row is None else row[0]
            conn.execute(
                "UPDATE devices SET welcomed_at = ? WHERE account_id = ? AND device_id = ?",
                (now, *key),
            )
            # In conversations where the account has sent something: every other member's
            # marks if one of them has not read it all yet, and any marks that moved since
            # this device's previous Welcome (it may have missed the Receipt).
            rows = conn.execute(
                "SELECT w.conv_id, w.account_id, w.delivered, w.read, NULLIF(w.delivered_at, 0),"
                " NULLIF(w.read_at, 0) FROM members me"
                " JOIN members w ON w.conv_id = me.conv_id AND w.account_id != me.account_id"
                " WHERE me.account_id = ? AND me.last_sent > 0 AND (w.marks_at >= ? OR EXISTS ("
                "   SELECT 1 FROM members o WHERE o.conv_id = me.conv_id"
                "   AND o.account_id != me.account_id AND o.read < me.last_sent))"
                " ORDER BY w.conv_id, w.joined_seq, w.rowid",
                (account_id, since),
            )
            return [Watermark(*r) for r in rows]

        return await self._write(tx)


def _raise_watermarks(
    conn: sqlite3.Connection, conv_id: str, account: str, *, delivered: int, read: int, now: int
) -> WatermarkMove | None:
    """Raise a member's watermarks (see :func:`raise_marks`). ``None`` if the account is not a
    member or nothing moved."""
    row = conn.execute(
        "SELECT m.delivered, m.read, c.last_seq FROM members m"
        " JOIN conversations c ON c.id = m.conv_id WHERE m.conv_id = ? AND m.account_id = ?",
        (conv_id, account),
    ).fetchone()
    if row is None:
        return None
    old_delivered, old_read, head = row
    move = raise_marks(old_delivered, old_read, head, delivered=delivered, read=read)
    if move is None:
        return None
    times = conn.execute(
        "UPDATE members SET delivered = ?, read = ?, marks_at = ?,"
        " delivered_at = CASE WHEN ? > delivered THEN ? ELSE delivered_at END,"
        " read_at = CASE WHEN ? > read THEN ? ELSE read_at END"
        " WHERE conv_id = ? AND account_id = ?"
        " RETURNING NULLIF(delivered_at, 0), NULLIF(read_at, 0)",
        (move.delivered, move.read, now, move.delivered, now, move.read, now, conv_id, account),
    ).fetchone()
    senders = tuple(
        sender
        for (sender,) in conn.execute(
            "SELECT DISTINCT sender FROM envelopes WHERE conv_id = ? AND seq > ? AND seq <= ?"
            " AND kind = 'msg' AND sender != ?",
            (conv_id, move.low, move.high, account),
        )
    )
    return WatermarkMove(conv_id, account, move.delivered, move.read, senders, *times)


class _Ack(msgspec.Struct, frozen=True):
    account_id: str
    device_id: int
    upto: list[tuple[str, int]]
    now: int


class _Marks:
    """A member's watermarks while a batch of Acks raises them."""

    __slots__ = ("delivered", "delivered_at", "low", "now", "owner", "read", "read_at")

    def __init__(self, delivered: int, read: int, delivered_at: int, read_at: int) -> None:
        self.delivered = delivered
        self.read = read
        self.delivered_at = delivered_at
        self.read_at = read_at
        #: where the first move of this batch started (None: not moved)
        self.low: int | None = None
        #: the Ack that moved them last, and its time
        self.owner = -1
        self.now = 0


#: Acks of one conversation in one batch from which its members' marks are read at once.
_BULK_MARKS = 16
#: Widest seq range whose senders are read at once for all the moves of a conversation.
_SENDERS_SPAN = 4096


def ack_many(conn: sqlite3.Connection, acks: list[_Ack]) -> list[tuple[list[WatermarkMove]]]:
    """The Acks queued back to back, together: their pending rows go with one ``executemany``;
    each member's watermarks are raised once per conversation however many Acks (of however
    many of its devices) moved them, and that one move is reported to the last Ack that
    raised them (its senders cover the whole rise). The writer runs Acks through this
    (:meth:`Database._write_batched`)."""
    conn.executemany(
        "DELETE FROM pending WHERE account_id = ? AND device_id = ? AND conv_id = ? AND seq <= ?",
        [(a.account_id, a.device_id, conv, seq) for a in acks for conv, seq in a.upto],
    )
    per_conv: dict[str, int] = {}
    for a in acks:
        for conv, _ in a.upto:
            per_conv[conv] = per_conv.get(conv, 0) + 1
    heads: dict[str, int | None] = {}
    marks: dict[tuple[str, str], _Marks | None] = {}
    for conv, count in per_conv.items():
        row = conn.execute("SELECT last_seq FROM conversations WHERE id = ?", (conv,)).fetchone()
        heads[conv] = None if row is None else int(row[0])
        if row is not None and count >= _BULK_MARKS:
            for account, *values in conn.execute(
                "SELECT account_id, delivered, read, delivered_at, read_at FROM members"
                " WHERE conv_id = ?",
                (conv,),
            ):
                marks[(conv, account)] = _Marks(*values)
    moved: list[tuple[str, str, _Marks]] = []
    for index, a in enumerate(acks):
        for conv, seq in a.upto:
            head = heads[conv]
            if head is None:
                continue
            key = (conv, a.account_id)
            if key in marks:
                member = marks[key]
            else:
                row = conn.execute(
                    "SELECT delivered, read, delivered_at, read_at FROM members"
                    " WHERE conv_id = ? AND account_id = ?",
                    key,
                ).fetchone()
                member = marks[key] = None if row is None else _Marks(*row)
            if member is None:
                continue
            move = raise_marks(member.delivered, member.read, head, delivered=seq, read=0)
            if move is None:
                continue
            if member.low is None:
                member.low = move.low
                moved.append((conv, a.account_id, member))
            if move.delivered > member.delivered:
                member.delivered_at = a.now
            if move.read > member.read:
                member.read_at = a.now
            member.delivered, member.read = move.delivered, move.read
            member.owner, member.now = index, a.now
    results: list[tuple[list[WatermarkMove]]] = [([],) for _ in acks]
    if not moved:
        return results
    conn.executemany(
        "UPDATE members SET delivered = ?, read = ?, marks_at = ?, delivered_at = ?, read_at = ?"
        " WHERE conv_id = ? AND account_id = ?",
        [
            (m.delivered, m.read, m.now, m.delivered_at, m.read_at, conv, account)
            for conv, account, m in moved
        ],
    )
    senders = _senders_of(conn, moved)
    for (conv, account, m), who in zip(moved, senders, strict=True):
        results[m.owner][0].append(
            WatermarkMove(
                conv, account, m.delivered, m.read, who, m.delivered_at or None, m.read_at or None
            )
        )
    return results


def _senders_of(
    conn: sqlite3.Connection, moved: list[tuple[str, str, _Marks]]
) -> list[tuple[str, ...]]:
    """For each move, the accounts other than the member with messages in the range it
    covered (``low`` up to the highest new mark)."""
    spans: dict[str, tuple[int, int]] = {}
    for conv, _, m in moved:
        assert m.low is not None
        high = max(m.delivered, m.read)
        low, top = spans.get(conv, (m.low, high))
        spans[conv] = (min(low, m.low), max(top, high))
    # Per conversation, its messages in the range every move of it covers: (seqs, senders).
    read_at_once: dict[str, tuple[list[int], list[str]]] = {}
    for conv, (low, high) in spans.items():
        if high - low <= _SENDERS_SPAN:
            rows = conn.execute(
                "SELECT seq, sender FROM envelopes WHERE conv_id = ? AND seq > ? AND seq <= ?"
                " AND kind = 'msg' ORDER BY seq",
                (conv, low, high),
            ).fetchall()
            read_at_once[conv] = ([r[0] for r in rows], [r[1] for r in rows])
    found: list[tuple[str, ...]] = []
    for conv, account, m in moved:
        assert m.low is not None
        high = max(m.delivered, m.read)
        known = read_at_once.get(conv)
        if known is None:
            found.append(
                tuple(
                    sender
                    for (sender,) in conn.execute(
                        "SELECT DISTINCT sender FROM envelopes WHERE conv_id = ? AND seq > ?"
                        " AND seq <= ? AND kind = 'msg' AND sender != ?",
                        (conv, m.low, high, account),
                    )
                )
            )
            continue
        seqs, who = known
        start, end = bisect.bisect_right(seqs, m.low), bisect.bisect_right(seqs, high)
        found.append(tuple(dict.fromkeys(s for s in who[start:end] if s != account)))
    return found
