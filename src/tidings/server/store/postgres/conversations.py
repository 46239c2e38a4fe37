"""Conversations and their members, and the Sends that add messages to them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.protocol import Envelope, ErrorCode, SystemEvent, encode
from tidings.server.domain import (
    Appended,
    ConversationRecord,
    MemberRecord,
    MembershipChange,
    NewConversation,
    NewMessage,
    Refused,
    Role,
    StaleDeviceList,
)
from tidings.server.domain import conversations as rules
from tidings.server.domain.devices import check_device_list
from tidings.server.store.postgres.batches import Batcher
from tidings.server.store.postgres.database import Connection, Database
from tidings.server.store.postgres.envelopes import (
    ENVELOPE_COLUMNS,
    append_system,
    envelope_at,
    envelope_of,
    over_quota,
    stored_size,
)


class Conversations(Database):
    async def conversation(self, conv_id: str) -> ConversationRecord | None:
        return await self._read(lambda conn: conversation_record(conn, conv_id))

    async def heads(self, account_id: str) -> dict[str, int]:
        async def q(conn: Connection) -> dict[str, int]:
            rows = await conn.fetch(
                "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = $1",
                account_id,
            )
            return {row[0]: row[1] for row in rows}

        return await self._read(q)

    async def conversations_of(self, account_id: str) -> list[ConversationRecord]:
        async def q(conn: Connection) -> list[ConversationRecord]:
            ids = await conn.fetch(
                "SELECT c.id FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = $1 ORDER BY c.created_at, c.id",
                account_id,
            )
            records = [await conversation_record(conn, row[0]) for row in ids]
            return [r for r in records if r is not None]

        return await self._read(q)

    async def create_direct(self, new: NewConversation, peer: str) -> tuple[MembershipChange, bool]:
        key = rules.direct_key(new.actor, peer)
        everyone = tuple(dict.fromkeys((new.actor, peer)))  # one account: note to self

        async def tx(conn: Connection) -> tuple[MembershipChange, bool]:
            existing = await conn.fetchval(
                "SELECT id FROM conversations WHERE direct_key = $1", key
            )
            if existing is not None:
                record = await must_conversation(conn, existing)
                try:
                    envelope = await envelope_at(conn, record.id, 1)
                except LookupError:  # past the retention period: what it said, without its id
                    event = SystemEvent(action="created", actor=new.actor, members=list(everyone))
                    envelope = Envelope(
                        conv=record.id,
                        seq=1,
                        id=uuid.UUID(int=0),
                        sender=new.actor,
                        sender_device=new.actor_device,
                        ts=record.created_at,
                        payload=encode(event),
                        kind="system",
                    )
                return MembershipChange(record, envelope, ()), False
            # Two nodes creating this pair at once: the loser fails on direct_key and runs
            # again, finding the winner's conversation above.
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES ($1, 'direct', '', $2, 0, $3)",
                new.conv_id,
                key,
                new.now,
            )
            await _insert_members(conn, new.conv_id, [(a, "member") for a in everyone], 1)
            event = SystemEvent(action="created", actor=new.actor, members=list(everyone))
            envelope = await append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = await must_conversation(conn, new.conv_id)
            return MembershipChange(record, envelope, everyone), True

        return await self._write(tx)

    async def create_group(
        self, new: NewConversation, title: str, members: Sequence[str], cap: int
    ) -> MembershipChange:
        others = rules.new_group_members(new.actor, members, cap)

        async def tx(conn: Connection) -> MembershipChange:
            await conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES ($1, 'group', $2, NULL, 0, $3)",
                new.conv_id,
                title,
                new.now,
            )
            roles: list[tuple[str, Role]] = [(new.actor, "admin")]
            await _insert_members(conn, new.conv_id, roles + [(a, "member") for a in others], 1)
            everyone = [new.actor, *others]
            event = SystemEvent(action="created", actor=new.actor, members=everyone, title=title)
            envelope = await append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = await must_conversation(conn, new.conv_id)
            return MembershipChange(record, envelope, tuple(everyone))

        return await self._write(tx)

    async def add_members(
        self,
        conv_id: str,
        actor: str,
        accounts: Sequence[str],
        cap: int,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        adding = list(dict.fromkeys(accounts))

        async def tx(conn: Connection) -> MembershipChange:
            found = await conversation_record(conn, conv_id, lock=True)
            record = rules.group_for(found, actor, admin=True)
            rules.check_additions(record, adding, cap)
            seq = record.last_seq + 1
            await _insert_members(conn, conv_id, [(a, "member") for a in adding], seq)
            event = SystemEvent(action="member_added", actor=actor, members=adding)
            envelope = await append_system(conn, conv_id, event, event_id, actor_device, now)
            after = await must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, rules.member_ids(after))

        return await self._write(tx)

    async def remove_member(
        self,
        conv_id: str,
        actor: str,
        account: str,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        if account == actor:
            return await self.leave(conv_id, actor, event_id, actor_device, now)

        async def tx(conn: Connection) -> MembershipChange:
            found = await conversation_record(conn, conv_id, lock=True)
            record = rules.group_for(found, actor, admin=True)
            rules.check_removal(record, account)
            event = SystemEvent(action="member_removed", actor=actor, members=[account])
            # Written while the member still belongs, so its devices get this envelope too.
            envelope = await append_system(conn, conv_id, event, event_id, actor_device, now)
            await conn.execute(
                "DELETE FROM members WHERE conv_id = $1 AND account_id = $2", conv_id, account
            )
            after = await must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*rules.member_ids(after), account))

        return await self._write(tx)

    async def leave(
        self, conv_id: str, account: str, event_id: uuid.UUID, device: int, now: int
    ) -> MembershipChange:
        async def tx(conn: Connection) -> MembershipChange:
            rules.group_for(
                await conversation_record(conn, conv_id, lock=True), account, admin=False
            )
            event = SystemEvent(action="member_left", actor=account, members=[account])
            envelope = await append_system(conn, conv_id, event, event_id, device, now)
            await conn.execute(
                "DELETE FROM members WHERE conv_id = $1 AND account_id = $2", conv_id, account
            )
            # The last admin left: the oldest remaining member takes over.
            await conn.execute(
                "UPDATE members SET role = 'admin' WHERE conv_id = $1 AND account_id = ("
                " SELECT account_id FROM members WHERE conv_id = $1 ORDER BY joined_seq, pos"
                " LIMIT 1) AND NOT EXISTS (SELECT 1 FROM members WHERE conv_id = $1"
                " AND role = 'admin')",
                conv_id,
            )
            after = await must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*rules.member_ids(after), account))

        return await self._write(tx)

    #: queues the Sends handed in together (made at the first one)
    _sends: Batcher[SendItem, Appended] | None = None

    async def append(self, message: NewMessage, *, quota: int = 0) -> Appended:
        # Batched with the Sends that come with it, in their order per conversation.
        if self._sends is None:
            self._sends = Batcher(self._append_batch, lambda item: item[0].conv, lanes=SEND_LANES)
        return await self._sends.submit((message, quota))

    async def _append_batch(self, items: list[SendItem]) -> list[SendOutcome]:
        return await self._write(lambda conn: append_many(conn, items))

    async def device_map(self, conv_id: str) -> dict[str, list[int]]:
        return await self._read(lambda conn: device_map(conn, conv_id))


# Functions below run inside a transaction of the caller.

_CONVERSATION = "SELECT id, kind, title, last_seq, created_at FROM conversations WHERE id = $1"
_LOCK_CONVERSATION = _CONVERSATION + " FOR UPDATE"


async def conversation_record(
    conn: Connection, conv_id: str, *, lock: bool = False
) -> ConversationRecord | None:
    """The conversation with its members; with ``lock``, its row stays locked (FOR UPDATE)
    until the transaction ends, so membership changes and Sends to it take turns."""
    row = await conn.fetchrow(_LOCK_CONVERSATION if lock else _CONVERSATION, conv_id)
    if row is None:
        return None
    members = tuple(
        MemberRecord(r[0], r[1], "admin" if r[2] == "admin" else "member", r[3], r[4], r[5])
        for r in await conn.fetch(
            "SELECT m.account_id, a.username, m.role, m.joined_seq, m.delivered, m.read"
            " FROM members m JOIN accounts a ON a.id = m.account_id WHERE m.conv_id = $1"
            " ORDER BY m.joined_seq, m.pos",
            conv_id,
        )
    )
    conv, kind, title, last_seq, created_at = row
    return ConversationRecord(
        id=conv,
        kind="group" if kind == "group" else "direct",
        title=title,
        last_seq=last_seq,
        created_at=created_at,
        members=members,
    )


async def must_conversation(conn: Connection, conv_id: str) -> ConversationRecord:
    record = await conversation_record(conn, conv_id)
    if record is None:
        raise LookupError(f"conversation {conv_id} missing")
    return record


async def require_member(conn: Connection, conv_id: str, account: str) -> None:
    """Raise unless ``account`` is a member (see :func:`rules.require_member`)."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1),"
        " EXISTS (SELECT 1 FROM members WHERE conv_id = $1 AND account_id = $2)",
        conv_id,
        account,
    )
    assert row is not None
    rules.require_member(bool(row[0]), bool(row[1]))


async def _insert_members(
    conn: Connection, conv_id: str, roles: Sequence[tuple[str, Role]], joined_seq: int
) -> None:
    """Insert members in this order (their ``pos`` orders them after ``joined_seq``)."""
    marks = rules.initial_marks(joined_seq)
    await conn.executemany(
        "INSERT INTO members (conv_id, account_id, role, joined_seq, delivered, read)"
        " VALUES ($1, $2, $3, $4, $5, $5)",
        [(conv_id, account, role, joined_seq, marks) for account, role in roles],
    )


async def device_map(conn: Connection, conv_id: str) -> dict[str, list[int]]:
    """Every member → its devices that have uploaded keys, in id order."""
    devices: dict[str, list[int]] = {}
    for account, device in await conn.fetch(
        "SELECT m.account_id, k.device_id FROM members m"
        " LEFT JOIN device_keys k ON k.account_id = m.account_id"
        " WHERE m.conv_id = $1 ORDER BY m.joined_seq, m.pos, k.device_id",
        conv_id,
    ):
        ids = devices.setdefault(account, [])
        if device is not None:
            ids.append(device)
    return devices


#: Batches of Sends one node writes at once, each on its own pooled connection.
SEND_LANES = 4

#: A Send of a batch: the message and its sender's quota.
SendItem = tuple[NewMessage, int]

#: A Send's outcome within a batch: stored (or found stored), or why not.
SendOutcome = Appended | Refused | StaleDeviceList

#: The stored envelopes among some message ids (through the envelopes_by_id index on
#: (id, sender)).
STORED_IDS_SQL = f"SELECT {ENVELOPE_COLUMNS} FROM envelopes WHERE id = ANY($1::bytea[])"  # noqa: S608  # constant column list

_DEVICE_MAP_OF = (
    "SELECT m.conv_id, m.account_id, k.device_id FROM members m"
    " LEFT JOIN device_keys k ON k.account_id = m.account_id"
    " WHERE m.conv_id = ANY($1::text[]) ORDER BY m.conv_id, m.joined_seq, m.pos, k.device_id"
)

#: Writes a batch's checked Sends in one statement: their envelopes, the conversations' new
#: heads, the senders' stored bytes and last_sent, and the pending rows of every device of
#: every member but the sending one (not the blocker's in a direct conversation), each with its
#: device's own ciphertext. Returns who each envelope was queued for.
_WRITE_SENDS = (
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[],"
    " $5::int[], $6::bigint[], $7::bytea[], $8::text[], $9::bigint[], $10::bool[])"
    " AS u (conv_id, seq, id, sender, sender_device, ts, payload, mentions, size, direct)),"
    " e AS (INSERT INTO envelopes"
    " (conv_id, seq, id, sender, sender_device, ts, kind, payload, mentions, size)"
    " SELECT conv_id, seq, id, sender, sender_device, ts, 'msg', payload, mentions, size FROM u),"
    " c AS (UPDATE conversations c SET last_seq = h.head"
    " FROM unnest($11::text[], $12::bigint[]) AS h (id, head) WHERE c.id = h.id),"
    " a AS (UPDATE accounts a SET stored_bytes = a.stored_bytes + s.size"
    " FROM unnest($13::text[], $14::bigint[]) AS s (id, size) WHERE a.id = s.id),"
    " l AS (UPDATE members m SET last_sent = l.seq"
    " FROM unnest($15::text[], $16::text[], $17::bigint[]) AS l (conv_id, account_id, seq)"
    " WHERE m.conv_id = l.conv_id AND m.account_id = l.account_id),"
    " p AS (INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at, payload)"
    " SELECT d.account_id, d.device_id, u.conv_id, u.seq, u.ts, o.payload FROM u"
    " JOIN members m ON m.conv_id = u.conv_id JOIN devices d ON d.account_id = m.account_id"
    " LEFT JOIN unnest($18::text[], $19::bigint[], $20::text[], $21::int[], $22::bytea[])"
    " AS o (conv_id, seq, account_id, device_id, payload) ON o.conv_id = u.conv_id"
    " AND o.seq = u.seq AND o.account_id = d.account_id AND o.device_id = d.device_id"
    " WHERE NOT (d.account_id = u.sender AND d.device_id = u.sender_device)"
    " AND NOT (u.direct AND EXISTS (SELECT 1 FROM blocks b"
    " WHERE b.blocker = m.account_id AND b.blocked = u.sender))"
    " RETURNING conv_id, seq, account_id)"
    " SELECT DISTINCT conv_id, seq, account_id FROM p"
)


async def append_many(conn: Connection, items: Sequence[SendItem]) -> list[SendOutcome]:
    """Store the Sends ``items`` (each with its sender's quota) together; each gets the
    outcome it would have alone. Their conversations are locked first, in id order (so two
    nodes writing to the same ones queue instead of deadlocking): their heads cannot move
    until commit, and seqs are handed out gapless, in the order of ``items``. Each Send is
    then checked in order (its id, membership, device list, quota; a refused one writes
    nothing) and the accepted ones are written by one statement (:data:`_WRITE_SENDS`).
    An id resent within the batch gets the first one's envelope."""
    outcomes: list[SendOutcome | None] = [None] * len(items)
    for index, (m, _) in enumerate(items):
        if "\x00" in m.conv:  # PostgreSQL's text cannot hold it: no such conversation
            outcomes[index] = Refused(ErrorCode.BAD_FRAME, "text must not contain a NUL character")
    wanted = [(i, m, quota) for i, (m, quota) in enumerate(items) if outcomes[i] is None]
    if not wanted:
        return [o for o in outcomes if o is not None]
    convs = sorted({m.conv for _, m, _ in wanted})
    senders = sorted({m.sender for _, m, _ in wanted})
    heads: dict[str, tuple[bool, int, set[str]]] = {}  # conv → (direct, head, senders in it)
    for conv, kind, head, in_it in await conn.fetch(
        "SELECT c.id, c.kind, c.last_seq, ARRAY(SELECT m.account_id FROM members m"
        " WHERE m.conv_id = c.id AND m.account_id = ANY($2::text[]))"
        " FROM conversations c WHERE c.id = ANY($1::text[]) ORDER BY c.id FOR UPDATE OF c",
        convs,
        senders,
    ):
        heads[conv] = (kind == "direct", head, set(in_it))
    stored_before: dict[bytes, list[Envelope]] = {}
    for row in await conn.fetch(STORED_IDS_SQL, list({m.id.bytes for _, m, _ in wanted})):
        envelope = envelope_of(row)
        stored_before.setdefault(envelope.id.bytes, []).append(envelope)
    devices: dict[str, dict[str, list[int]]] = {}
    e2ee = sorted({m.conv for _, m, _ in wanted if m.device_payloads or m.devices_digest})
    if e2ee:
        for conv, account, device in await conn.fetch(_DEVICE_MAP_OF, e2ee):
            ids = devices.setdefault(conv, {}).setdefault(account, [])
            if device is not None:
                ids.append(device)
    stored_bytes: dict[str, int] = {}
    if any(quota > 0 for _, _, quota in wanted):
        for account, size in await conn.fetch(
            "SELECT id, stored_bytes FROM accounts WHERE id = ANY($1::text[])", senders
        ):
            stored_bytes[account] = int(size)
    #: ids accepted in this batch → index of the first
    taken: dict[bytes, int] = {}
    accepted: list[tuple[int, NewMessage, int]] = []  # (index, message, size)
    resent: list[tuple[int, int]] = []  # (index, index of the batch's first with its id)
    for index, m, quota in wanted:
        first = taken.get(m.id.bytes)
        if first is not None:
            if items[first][0].sender == m.sender:
                resent.append((index, first))
            else:
                outcomes[index] = Refused(ErrorCode.CONFLICT, "this message id is already taken")
            continue
        try:
            outcomes[index] = _checked(m, quota, heads, stored_before, devices, stored_bytes)
        except (Refused, StaleDeviceList) as refused:
            outcomes[index] = refused
            continue
        if outcomes[index] is None:
            extra = sum(len(payload) for _, payload in m.device_payloads)
            size = stored_size(m.payload, m.mentions, extra)
            stored_bytes[m.sender] = stored_bytes.get(m.sender, 0) + size
            taken[m.id.bytes] = index
            accepted.append((index, m, size))
    if accepted:
        await _write_sends(conn, accepted, heads, outcomes)
    for index, first in resent:
        original = outcomes[first]
        assert isinstance(original, Appended)
        outcomes[index] = Appended(original.envelope, (), duplicate=True)
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(items)  # every Send has its outcome
    return done


def _checked(
    m: NewMessage,
    quota: int,
    heads: dict[str, tuple[bool, int, set[str]]],
    stored_before: dict[bytes, list[Envelope]],
    devices: dict[str, dict[str, list[int]]],
    stored_bytes: dict[str, int],
) -> Appended | None:
    """Whether ``m`` may be stored (None), was stored before (the original, a duplicate), or
    is refused (raises). ``stored_bytes`` counts the batch's Sends accepted before it."""
    found = stored_before.get(m.id.bytes, [])
    mine = [e for e in found if e.sender == m.sender]
    if mine:
        return Appended(mine[0], (), duplicate=True)
    if found:
        # Someone else's id: accepting it would let a member shadow another's message.
        raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
    facts = heads.get(m.conv)
    rules.require_member(facts is not None, facts is not None and m.sender in facts[2])
    assert facts is not None
    if m.device_payloads or m.devices_digest:
        check_device_list("direct" if facts[0] else "group", m, devices.get(m.conv, {}))
    if quota > 0:
        extra = sum(len(payload) for _, payload in m.device_payloads)
        if stored_bytes.get(m.sender, 0) + stored_size(m.payload, m.mentions, extra) > quota:
            raise over_quota(quota)
    return None


async def _write_sends(
    conn: Connection,
    accepted: list[tuple[int, NewMessage, int]],
    heads: dict[str, tuple[bool, int, set[str]]],
    outcomes: list[SendOutcome | None],
) -> None:
    """Write the checked Sends of :func:`append_many` and fill in their outcomes."""
    next_seq = {conv: head + 1 for conv, (_, head, _) in heads.items()}
    rows: list[list[Any]] = [[] for _ in range(10)]
    own: list[list[Any]] = [[] for _ in range(5)]
    sizes: dict[str, int] = {}
    last_sent: dict[tuple[str, str], int] = {}
    envelopes: list[tuple[int, Envelope]] = []
    for index, m, size in accepted:
        seq = next_seq[m.conv]
        next_seq[m.conv] = seq + 1
        envelope = m.envelope(seq)
        envelopes.append((index, envelope))
        mentions = msgspec.json.encode(envelope.mentions).decode() if m.mentions else None
        values = (m.conv, seq, m.id.bytes, m.sender, m.sender_device, m.ts, m.payload)
        for column, value in zip(rows, (*values, mentions, size, heads[m.conv][0]), strict=True):
            column.append(value)
        for (account, device), payload in m.device_payloads:
            for column, field in zip(own, (m.conv, seq, account, device, payload), strict=True):
                column.append(field)
        if size:
            sizes[m.sender] = sizes.get(m.sender, 0) + size
        last_sent[(m.conv, m.sender)] = seq
    moved = [(conv, seq - 1) for conv, seq in next_seq.items() if seq - 1 != heads[conv][1]]
    recipients: dict[tuple[str, int], list[str]] = {}
    for conv, seq, account in await conn.fetch(
        _WRITE_SENDS,
        *rows,
        [conv for conv, _ in moved],
        [head for _, head in moved],
        list(sizes),
        list(sizes.values()),
        [conv for conv, _ in last_sent],
        [sender for _, sender in last_sent],
        list(last_sent.values()),
        *own,
    ):
        recipients.setdefault((conv, seq), []).append(account)
    for index, envelope in envelopes:
        queued = tuple(recipients.get((envelope.conv, envelope.seq), ()))
        outcomes[index] = Appended(envelope, queued, duplicate=False)
