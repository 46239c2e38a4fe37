"""Conversations and their members, and the Sends that add messages to them."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence

from tidings.protocol import Envelope, ErrorCode, SystemEvent, encode
from tidings.server.domain import (
    Appended,
    ConversationKind,
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
from tidings.server.store.sqlite.envelopes import (
    append_system,
    check_quota,
    envelope_at,
    next_seq,
    store_envelope,
    stored_size,
)
from tidings.server.store.sqlite.writer import Database, WriterConnection


class Conversations(Database):
    async def conversation(self, conv_id: str) -> ConversationRecord | None:
        return await self._read(lambda conn: conversation_record(conn, conv_id))

    async def heads(self, account_id: str) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = ?",
                (account_id,),
            )
            return {conv: seq for conv, seq in rows}

        return await self._read(q)

    async def conversations_of(self, account_id: str) -> list[ConversationRecord]:
        def q(conn: sqlite3.Connection) -> list[ConversationRecord]:
            ids = conn.execute(
                "SELECT c.id FROM members m JOIN conversations c ON c.id = m.conv_id"
                " WHERE m.account_id = ? ORDER BY c.created_at, c.id",
                (account_id,),
            ).fetchall()
            records = (conversation_record(conn, conv) for (conv,) in ids)
            return [r for r in records if r is not None]

        return await self._read(q)

    async def create_direct(self, new: NewConversation, peer: str) -> tuple[MembershipChange, bool]:
        key = rules.direct_key(new.actor, peer)
        everyone = tuple(dict.fromkeys((new.actor, peer)))  # one account: note to self

        def tx(conn: sqlite3.Connection) -> tuple[MembershipChange, bool]:
            row = conn.execute(
                "SELECT id FROM conversations WHERE direct_key = ?", (key,)
            ).fetchone()
            if row is not None:
                record = must_conversation(conn, row[0])
                try:
                    envelope = envelope_at(conn, record.id, 1)
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
            conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES (?, 'direct', '', ?, 0, ?)",
                (new.conv_id, key, new.now),
            )
            for account in everyone:
                _insert_member(conn, new.conv_id, account, "member", joined_seq=1)
            event = SystemEvent(action="created", actor=new.actor, members=list(everyone))
            envelope = append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = must_conversation(conn, new.conv_id)
            return MembershipChange(record, envelope, everyone), True

        return await self._write(tx)

    async def create_group(
        self, new: NewConversation, title: str, members: Sequence[str], cap: int
    ) -> MembershipChange:
        others = rules.new_group_members(new.actor, members, cap)

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            conn.execute(
                "INSERT INTO conversations (id, kind, title, direct_key, last_seq, created_at)"
                " VALUES (?, 'group', ?, NULL, 0, ?)",
                (new.conv_id, title, new.now),
            )
            _insert_member(conn, new.conv_id, new.actor, "admin", joined_seq=1)
            for account in others:
                _insert_member(conn, new.conv_id, account, "member", joined_seq=1)
            everyone = [new.actor, *others]
            event = SystemEvent(action="created", actor=new.actor, members=everyone, title=title)
            envelope = append_system(
                conn, new.conv_id, event, new.event_id, new.actor_device, new.now
            )
            record = must_conversation(conn, new.conv_id)
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

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            record = rules.group_for(conversation_record(conn, conv_id), actor, admin=True)
            rules.check_additions(record, adding, cap)
            seq = record.last_seq + 1
            for account in adding:
                _insert_member(conn, conv_id, account, "member", joined_seq=seq)
            event = SystemEvent(action="member_added", actor=actor, members=adding)
            envelope = append_system(conn, conv_id, event, event_id, actor_device, now)
            after = must_conversation(conn, conv_id)
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

        def tx(conn: sqlite3.Connection) -> MembershipChange:
            record = rules.group_for(conversation_record(conn, conv_id), actor, admin=True)
            rules.check_removal(record, account)
            event = SystemEvent(action="member_removed", actor=actor, members=[account])
            # Written while the member still belongs, so its devices get this envelope too.
            envelope = append_system(conn, conv_id, event, event_id, actor_device, now)
            conn.execute(
                "DELETE FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
            )
            after = must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*rules.member_ids(after), account))

        return await self._write(tx)

    async def leave(
        self, conv_id: str, account: str, event_id: uuid.UUID, device: int, now: int
    ) -> MembershipChange:
        def tx(conn: sqlite3.Connection) -> MembershipChange:
            rules.group_for(conversation_record(conn, conv_id), account, admin=False)
            event = SystemEvent(action="member_left", actor=account, members=[account])
            envelope = append_system(conn, conv_id, event, event_id, device, now)
            conn.execute(
                "DELETE FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
            )
            admins = conn.execute(
                "SELECT 1 FROM members WHERE conv_id = ? AND role = 'admin' LIMIT 1", (conv_id,)
            ).fetchone()
            if admins is None:
                # The last admin left: the oldest remaining member takes over.
                conn.execute(
                    "UPDATE members SET role = 'admin' WHERE rowid = (SELECT rowid FROM members"
                    " WHERE conv_id = ? ORDER BY joined_seq, rowid LIMIT 1)",
                    (conv_id,),
                )
            after = must_conversation(conn, conv_id)
            return MembershipChange(after, envelope, (*rules.member_ids(after), account))

        return await self._write(tx)

    async def append(self, message: NewMessage, *, quota: int = 0) -> Appended:
        return await self._write(lambda conn: _append(conn, message, quota))

    async def device_map(self, conv_id: str) -> dict[str, list[int]]:
        return await self._read(lambda conn: device_map(conn, conv_id))


# Functions below run on the writer thread (or a reader) inside a transaction.


def conversation_record(conn: sqlite3.Connection, conv_id: str) -> ConversationRecord | None:
    row = conn.execute(
        "SELECT id, kind, title, last_seq, created_at FROM conversations WHERE id = ?",
        (conv_id,),
    ).fetchone()
    if row is None:
        return None
    members = tuple(
        MemberRecord(account, username, "admin" if role == "admin" else "member", *rest)
        for account, username, role, *rest in conn.execute(
            "SELECT m.account_id, a.username, m.role, m.joined_seq, m.delivered, m.read"
            " FROM members m JOIN accounts a ON a.id = m.account_id WHERE m.conv_id = ?"
            " ORDER BY m.joined_seq, m.rowid",
            (conv_id,),
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


def must_conversation(conn: sqlite3.Connection, conv_id: str) -> ConversationRecord:
    record = conversation_record(conn, conv_id)
    if record is None:
        raise LookupError(f"conversation {conv_id} missing")
    return record


def require_member(conn: sqlite3.Connection, conv_id: str, account: str) -> None:
    """Raise unless ``account`` is a member (see :func:`rules.require_member`)."""
    is_member = (
        conn.execute(
            "SELECT 1 FROM members WHERE conv_id = ? AND account_id = ?", (conv_id, account)
        ).fetchone()
        is not None
    )
    exists = (
        is_member
        or conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        is not None
    )
    rules.require_member(exists, is_member)


def _insert_member(
    conn: sqlite3.Connection, conv_id: str, account: str, role: Role, *, joined_seq: int
) -> None:
    marks = rules.initial_marks(joined_seq)
    conn.execute(
        "INSERT INTO members (conv_id, account_id, role, joined_seq, delivered, read)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (conv_id, account, role, joined_seq, marks, marks),
    )


def device_map(conn: sqlite3.Connection, conv_id: str) -> dict[str, list[int]]:
    """Every member → its devices that have uploaded keys, in id order."""
    devices: dict[str, list[int]] = {}
    for account, device in conn.execute(
        "SELECT m.account_id, k.device_id FROM members m"
        " LEFT JOIN device_keys k ON k.account_id = m.account_id"
        " WHERE m.conv_id = ? ORDER BY m.joined_seq, m.rowid, k.device_id",
        (conv_id,),
    ):
        ids = devices.setdefault(account, [])
        if device is not None:
            ids.append(device)
    return devices


def send_facts(
    conn: sqlite3.Connection, conv_id: str, sender: str
) -> tuple[ConversationKind, dict[str, list[int]]]:
    """What an end-to-end-encrypted Send is checked against: the conversation's kind and
    :func:`device_map`. Raises NOT_FOUND/NOT_MEMBER first: a non-member must not learn
    anyone's devices from StaleDevices. The writer's connection keeps them between
    transactions (:class:`~tidings.server.store.sqlite.writer.WriterConnection`)."""
    cache = conn if isinstance(conn, WriterConnection) else None
    facts = cache.send_facts.get(conv_id) if cache is not None else None
    if facts is not None:
        if sender not in facts[1]:  # every member has an entry, with or without devices
            rules.require_member(True, False)
        return ("direct" if facts[0] == "direct" else "group"), facts[1]
    require_member(conn, conv_id, sender)
    row = conn.execute("SELECT kind FROM conversations WHERE id = ?", (conv_id,)).fetchone()
    if row is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    kind: ConversationKind = "direct" if row[0] == "direct" else "group"
    devices = device_map(conn, conv_id)
    if cache is not None:
        cache.remember(conv_id, (kind, devices))
    return kind, devices


def _append(conn: sqlite3.Connection, m: NewMessage, quota: int = 0) -> Appended:
    original = conn.execute(
        "SELECT sender, conv_id, seq FROM envelopes WHERE id = ?", (m.id.bytes,)
    ).fetchone()
    if original is not None:
        if original[0] != m.sender:
            # Someone else's id: accepting it would let a member shadow another's message.
            raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
        return Appended(envelope_at(conn, original[1], original[2]), (), duplicate=True)
    if m.device_payloads or m.devices_digest:
        kind, devices = send_facts(conn, m.conv, m.sender)
        check_device_list(kind, m, devices)
    extra = sum(len(payload) for _, payload in m.device_payloads)
    if quota > 0:
        try:
            check_quota(conn, m.sender, stored_size(m.payload, m.mentions, extra), quota)
        except Refused:
            require_member(conn, m.conv, m.sender)  # a non-member hears that first
            raise
    # Membership first, and without a trace if it fails: a refused Send writes nothing, so the
    # writer never has to roll back and rerun its group for one (the usual refusal).
    if not conn.execute(
        "UPDATE members SET last_sent = (SELECT last_seq + 1 FROM conversations WHERE id = ?)"
        " WHERE conv_id = ? AND account_id = ?",
        (m.conv, m.conv, m.sender),
    ).rowcount:
        require_member(conn, m.conv, m.sender)  # raises NOT_FOUND or NOT_MEMBER
    seq = next_seq(conn, m.conv)  # the seq last_sent was just set to
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
    recipients = store_envelope(
        conn, envelope, skip_device=(m.sender, m.sender_device), extra_size=extra
    )
    if m.device_payloads:
        conn.executemany(
            "UPDATE pending SET payload = ? WHERE account_id = ? AND device_id = ?"
            " AND conv_id = ? AND seq = ?",
            [
                (payload, account, device, m.conv, seq)
                for (account, device), payload in m.device_payloads
            ],
        )
    return Appended(envelope, tuple(recipients), duplicate=False)
