"""Receipts: the members' delivered and read watermarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidings.protocol import Watermark
from tidings.server.domain import WatermarkMove
from tidings.server.domain.conversations import raise_marks
from tidings.server.store.postgres.batches import Batcher
from tidings.server.store.postgres.conversations import require_member
from tidings.server.store.postgres.database import Connection, Database

#: Batches of Acks one node writes at once, each on its own pooled connection.
ACK_LANES = 3

#: An Ack of a batch: the account, its device, (conversation, seq) pairs and the time.
AckItem = tuple[str, int, tuple[tuple[str, int], ...], int]


class Receipts(Database):
    #: queues the Acks handed in together (made at the first one)
    _acks: Batcher[AckItem, list[WatermarkMove]] | None = None

    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        if not upto:
            return []
        # Batched with the Acks that come with it; an account's in the order they came.
        if self._acks is None:
            self._acks = Batcher(self._ack_batch, lambda item: item[0], lanes=ACK_LANES)
        return await self._acks.submit((account_id, device_id, tuple(upto.items()), now))

    async def _ack_batch(self, items: list[AckItem]) -> list[list[WatermarkMove]]:
        return await self._write(lambda conn: ack_many(conn, items))

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
            # The previous Welcome's time and snapshot, replaced by this one's in the same
            # statement.
            previous = await conn.fetchrow(
                "UPDATE devices d SET welcomed_at = $3, welcome_snapshot = pg_current_snapshot()"
                " FROM devices old WHERE d.account_id = $1 AND d.device_id = $2"
                " AND old.account_id = d.account_id AND old.device_id = d.device_id"
                " RETURNING old.welcomed_at, old.welcome_snapshot::text",
                account_id,
                device_id,
                now,
            )
            since, snapshot = (0, None) if previous is None else previous
            # In conversations where the account has sent something: every other member's
            # marks if one of them has not read it all yet, and any marks that moved since
            # this device's previous Welcome (it may have missed the Receipt): moved by a
            # transaction that Welcome could not see, or (a Welcome from before the snapshots
            # were kept) at or after its time.
            rows = await conn.fetch(
                "SELECT w.conv_id, w.account_id, w.delivered, w.read, NULLIF(w.delivered_at, 0),"
                " NULLIF(w.read_at, 0) FROM members me"
                " JOIN members w ON w.conv_id = me.conv_id AND w.account_id != me.account_id"
                " WHERE me.account_id = $1 AND me.last_sent > 0 AND (CASE WHEN $3::text IS NULL"
                " THEN w.marks_at >= $2 ELSE w.marks_xid IS NOT NULL"
                " AND NOT pg_visible_in_snapshot(w.marks_xid, $3::text::pg_snapshot) END"
                " OR EXISTS (SELECT 1 FROM members o WHERE o.conv_id = me.conv_id"
                "   AND o.account_id != me.account_id AND o.read < me.last_sent))"
                " ORDER BY w.conv_id, w.joined_seq, w.pos",
                account_id,
                since,
                snapshot,
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
        " marks_xid = pg_current_xact_id(),"
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


#: Drops the batch's acked pending rows, then reads (and locks, in key order, so two nodes
#: queue instead of deadlocking) the marks of every (conversation, account) it acks, with the
#: conversation's head.
_ACK_READ = (
    "WITH gone AS (DELETE FROM pending p"
    " USING unnest($1::text[], $2::int[], $3::text[], $4::bigint[])"
    " AS u (account_id, device_id, conv_id, seq) WHERE p.account_id = u.account_id"
    " AND p.device_id = u.device_id AND p.conv_id = u.conv_id AND p.seq <= u.seq)"
    " SELECT m.conv_id, m.account_id, m.delivered, m.read, m.delivered_at, m.read_at,"
    " c.last_seq FROM unnest($5::text[], $6::text[]) AS k (conv_id, account_id)"
    " JOIN members m ON m.conv_id = k.conv_id AND m.account_id = k.account_id"
    " JOIN conversations c ON c.id = m.conv_id"
    " ORDER BY m.conv_id, m.account_id FOR UPDATE OF m"
)

#: Writes the moved marks, and reads who has messages in the seqs each move covered.
_ACK_WRITE = (
    "WITH up AS (UPDATE members m SET delivered = u.delivered, read = u.read,"
    " marks_at = u.now, marks_xid = pg_current_xact_id(), delivered_at = u.delivered_at,"
    " read_at = u.read_at"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],"
    " $6::bigint[], $7::bigint[]) AS u (conv_id, account_id, delivered, read, now,"
    " delivered_at, read_at) WHERE m.conv_id = u.conv_id AND m.account_id = u.account_id)"
    " SELECT DISTINCT s.conv_id, s.account_id, e.sender"
    " FROM unnest($1::text[], $2::text[], $8::bigint[], $9::bigint[])"
    " AS s (conv_id, account_id, low, high) JOIN envelopes e ON e.conv_id = s.conv_id"
    " AND e.seq > s.low AND e.seq <= s.high AND e.kind = 'msg' AND e.sender != s.account_id"
)


class _Marks:
    """A member's watermarks while a batch of Acks raises them."""

    __slots__ = ("delivered", "delivered_at", "head", "low", "now", "owner", "read", "read_at")

    def __init__(
        self, delivered: int, read: int, delivered_at: int, read_at: int, head: int
    ) -> None:
        self.delivered = delivered
        self.read = read
        self.delivered_at = delivered_at
        self.read_at = read_at
        self.head = head
        #: where the first move of this batch started (None: not moved)
        self.low: int | None = None
        #: the Ack that moved them last, and its time
        self.owner = -1
        self.now = 0


async def ack_many(conn: Connection, acks: Sequence[AckItem]) -> list[list[WatermarkMove]]:
    """The Acks queued together, in two statements: their pending rows go, and each member's
    watermarks are raised once per conversation however many Acks (of however many of its
    devices) moved them; that one move is reported to the last Ack that raised them (its
    senders cover the whole rise). Conversations the account is not a member of move
    nothing."""
    deletes = [(a, d, conv, seq) for a, d, upto, _ in acks for conv, seq in upto]
    keys = sorted({(conv, a) for a, _, upto, _ in acks for conv, _ in upto})
    marks: dict[tuple[str, str], _Marks] = {}
    for conv, account, *values in await conn.fetch(
        _ACK_READ,
        *(list(column) for column in zip(*deletes, strict=True)),
        [conv for conv, _ in keys],
        [account for _, account in keys],
    ):
        marks[(conv, account)] = _Marks(*values)
    moved: list[tuple[str, str, _Marks]] = []
    for index, (account, _, upto, now) in enumerate(acks):
        for conv, seq in upto:
            member = marks.get((conv, account))
            if member is None:
                continue
            move = raise_marks(member.delivered, member.read, member.head, delivered=seq, read=0)
            if move is None:
                continue
            if member.low is None:
                member.low = move.low
                moved.append((conv, account, member))
            if move.delivered > member.delivered:
                member.delivered_at = now
            if move.read > member.read:
                member.read_at = now
            member.delivered, member.read = move.delivered, move.read
            member.owner, member.now = index, now
    results: list[list[WatermarkMove]] = [[] for _ in acks]
    if not moved:
        return results
    senders: dict[tuple[str, str], list[str]] = {}
    for conv, account, sender in await conn.fetch(
        _ACK_WRITE,
        [conv for conv, _, _ in moved],
        [account for _, account, _ in moved],
        [m.delivered for _, _, m in moved],
        [m.read for _, _, m in moved],
        [m.now for _, _, m in moved],
        [m.delivered_at for _, _, m in moved],
        [m.read_at for _, _, m in moved],
        [m.low for _, _, m in moved],
        [max(m.delivered, m.read) for _, _, m in moved],
    ):
        senders.setdefault((conv, account), []).append(sender)
    for conv, account, m in moved:
        results[m.owner].append(
            WatermarkMove(
                conv,
                account,
                m.delivered,
                m.read,
                tuple(sorted(senders.get((conv, account), ()))),
                m.delivered_at or None,
                m.read_at or None,
            )
        )
    return results
