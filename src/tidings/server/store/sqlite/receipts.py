"""Receipts: the members' delivered and read watermarks."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from tidings.protocol import Watermark
from tidings.server.domain import WatermarkMove
from tidings.server.domain.conversations import raise_marks
from tidings.server.store.sqlite.conversations import require_member
from tidings.server.store.sqlite.writer import Database


class Receipts(Database):
    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        items = list(upto.items())

        def tx(conn: sqlite3.Connection) -> list[WatermarkMove]:
            moves: list[WatermarkMove] = []
            for conv_id, seq in items:
                conn.execute(
                    "DELETE FROM pending WHERE account_id = ? AND device_id = ? AND conv_id = ?"
                    " AND seq <= ?",
                    (account_id, device_id, conv_id, seq),
                )
                move = _raise_watermarks(conn, conv_id, account_id, delivered=seq, read=0, now=now)
                if move is not None:
                    moves.append(move)
            return moves

        return await self._write(tx)

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
