"""Conversations and their members, and the Sends that add messages to them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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
)
from tidings.server.domain import conversations as rules
from tidings.server.domain.devices import check_device_list
from tidings.server.store.postgres.database import Connection, Database
from tidings.server.store.postgres.envelopes import (
    append_system,
    envelope_at,
    store_envelope,
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

    async def append(self, message: NewMessage, *, quota: int = 0) -> Appended:
        async with self._in_order(message.conv):  # in the order the Sends came
            return await self._write(lambda conn: _append(conn, message, quota))

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


async def _append(conn: Connection, m: NewMessage, quota: int = 0) -> Appended:
    original = await conn.fetchrow(
        "SELECT sender, conv_id, seq FROM envelopes WHERE id = $1", m.id.bytes
    )
    if original is not None:
        if original[0] != m.sender:
            # Someone else's id: accepting it would let a member shadow another's message.
            raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
        return Appended(await envelope_at(conn, original[1], original[2]), (), duplicate=True)
    if m.device_payloads or m.devices_digest:
        # Membership first: a non-member must not learn anyone's devices from StaleDevices.
        await require_member(conn, m.conv, m.sender)
        kind = await conn.fetchval("SELECT kind FROM conversations WHERE id = $1", m.conv)
        if kind is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
        devices = await device_map(conn, m.conv)
        check_device_list("direct" if kind == "direct" else "group", m, devices)
    # The seq and the sender's last_sent in one statement: the conversation's row stays locked
    # until commit, so concurrent Sends (on any node) take consecutive seqs; a refusal below
    # rolls the transaction back and the seq with it.
    seq = await conn.fetchval(
        "WITH c AS (UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1"
        " RETURNING last_seq)"
        " UPDATE members SET last_sent = c.last_seq FROM c WHERE conv_id = $1"
        " AND account_id = $2 RETURNING c.last_seq",
        m.conv,
        m.sender,
    )
    if seq is None:
        await require_member(conn, m.conv, m.sender)  # raises NOT_FOUND or NOT_MEMBER
        raise AssertionError("unreachable")
    envelope = Envelope(
        conv=m.conv,
        seq=seq,
        id=m.id,
        sender=m.sender,
        sender_device=m.sender_device,
        ts=m.ts,
        payload=m.payload,
        mentions=list(m.mentions),
    )
    extra = sum(len(payload) for _, payload in m.device_payloads)
    recipients = await store_envelope(
        conn, envelope, skip_device=(m.sender, m.sender_device), extra_size=extra, quota=quota
    )
    if m.device_payloads:
        await conn.executemany(
            "UPDATE pending SET payload = $1 WHERE account_id = $2 AND device_id = $3"
            " AND conv_id = $4 AND seq = $5",
            [
                (payload, account, device, m.conv, seq)
                for (account, device), payload in m.device_payloads
            ],
        )
    return Appended(envelope, tuple(recipients), duplicate=False)
