"""Receipts: the members' delivered and read watermarks."""

from __future__ import annotations

from collections.abc import Mapping

from tidings.protocol import Watermark
from tidings.server.domain import WatermarkMove
from tidings.server.domain.conversations import raise_marks
from tidings.server.store.postgres.conversations import require_member
from tidings.server.store.postgres.database import Connection, Database


class Receipts(Database):
    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        items = list(upto.items())

        async def tx(conn: Connection) -> list[WatermarkMove]:
            await conn.executemany(
                "DELETE FROM pending WHERE account_id = $1 AND device_id = $2 AND conv_id = $3"
                " AND seq <= $4",
                [(account_id, device_id, conv_id, seq) for conv_id, seq in items],
            )
            moves: list[WatermarkMove] = []
            for conv_id, seq in items:
                move = await _raise_watermarks(
                    conn, conv_id, account_id, delivered=seq, read=0, now=now
                )
                if move is not None:
                    moves.append(move)
            return moves

        return await self._write(tx)

    async def mark_read(
        self, account_id: str, conv_id: str, seq: int, now: int
    ) -> WatermarkMove | None:
        async def tx(conn: Connection) -> WatermarkMove | None:
            await require_member(conn, conv_id, account_id)
            return await _raise_watermarks(
                conn, conv_id, account_id, delivered=seq, read=seq, now=now
            )

        return await self._write(tx)

    async def watermarks(self, conv_id: str) -> list[Watermark]:
        async def q(conn: Connection) -> list[Watermark]:
            rows = await conn.fetch(
                "SELECT conv_id, account_id, delivered, read, NULLIF(delivered_at, 0),"
                " NULLIF(read_at, 0) FROM members WHERE conv_id = $1 ORDER BY joined_seq, pos",
                conv_id,
            )
            return [Watermark(*row) for row in rows]

        return await self._read(q)

    async def welcome_watermarks(
        self, account_id: str, device_id: int, now: int
    ) -> list[Watermark]:
        async def tx(conn: Connection) -> list[Watermark]:
            # The previous Welcome's time, replaced by this one's in the same statement.
            since = await conn.fetchval(
                "UPDATE devices d SET welcomed_at = $3 FROM devices old"
                " WHERE d.account_id = $1 AND d.device_id = $2"
                " AND old.account_id = d.account_id AND old.device_id = d.device_id"
                " RETURNING old.welcomed_at",
                account_id,
                device_id,
                now,
            )
            # In conversations where the account has sent something: every other member's
            # marks if one of them has not read it all yet, and any marks that moved since
            # this device's previous Welcome (it may have missed the Receipt).
            rows = await conn.fetch(
                "SELECT w.conv_id, w.account_id, w.delivered, w.read, NULLIF(w.delivered_at, 0),"
                " NULLIF(w.read_at, 0) FROM members me"
                " JOIN members w ON w.conv_id = me.conv_id AND w.account_id != me.account_id"
                " WHERE me.account_id = $1 AND me.last_sent > 0 AND (w.marks_at >= $2 OR EXISTS ("
                "   SELECT 1 FROM members o WHERE o.conv_id = me.conv_id"
                "   AND o.account_id != me.account_id AND o.read < me.last_sent))"
                " ORDER BY w.conv_id, w.joined_seq, w.pos",
                account_id,
                0 if since is None else since,
            )
            return [Watermark(*r) for r in rows]

        return await self._write(tx)


async def _raise_watermarks(
    conn: Connection, conv_id: str, account: str, *, delivered: int, read: int, now: int
) -> WatermarkMove | None:
    """Raise a member's watermarks (see :func:`raise_marks`), its row locked while it is
    read and written. ``None`` if the account is not a member or nothing moved."""
    row = await conn.fetchrow(
        "SELECT m.delivered, m.read, c.last_seq FROM members m"
        " JOIN conversations c ON c.id = m.conv_id WHERE m.conv_id = $1 AND m.account_id = $2"
        " FOR UPDATE OF m",
        conv_id,
        account,
    )
    if row is None:
        return None
    old_delivered, old_read, head = row
    move = raise_marks(old_delivered, old_read, head, delivered=delivered, read=read)
    if move is None:
        return None
    # The times a watermark moved; returned by the same statement (0: unknown, as None).
    times = await conn.fetchrow(
        "UPDATE members SET delivered = $1, read = $2, marks_at = $3,"
        " delivered_at = CASE WHEN $1 > delivered THEN $3 ELSE delivered_at END,"
        " read_at = CASE WHEN $2 > read THEN $3 ELSE read_at END"
        " WHERE conv_id = $4 AND account_id = $5"
        " RETURNING NULLIF(delivered_at, 0), NULLIF(read_at, 0)",
        move.delivered,
        move.read,
        now,
        conv_id,
        account,
    )
    assert times is not None
    senders = tuple(
        row[0]
        for row in await conn.fetch(
            "SELECT DISTINCT sender FROM envelopes WHERE conv_id = $1 AND seq > $2 AND seq <= $3"
            " AND kind = 'msg' AND sender != $4",
            conv_id,
            move.low,
            move.high,
            account,
        )
    )
    return WatermarkMove(conv_id, account, move.delivered, move.read, senders, *times)
