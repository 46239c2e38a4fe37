"""Conversations and their members, and the Sends that add messages to them."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

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
    StaleDeviceList,
)
from tidings.server.domain import conversations as rules
from tidings.server.domain.devices import check_device_list
from tidings.server.store.sqlite.envelopes import (
    ENVELOPE_COLUMNS,
    append_system,
    envelope_at,
    over_quota,
    stored_size,
)
from tidings.server.store.sqlite.writer import Database, Fanout, WriterConnection


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
        appended: Appended = await self._write_batched(append_many, (message, quota))
        return appended

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


def fanout(conn: sqlite3.Connection, conv_id: str) -> Fanout | None:
    """Who the conversation's messages are queued for (None: no such conversation), from the
    writer's cache when it has it."""
    cache = conn if isinstance(conn, WriterConnection) else None
    if cache is not None:
        found = cache.fanout.get(conv_id)
        if found is not None:
            return found
    row = conn.execute("SELECT kind FROM conversations WHERE id = ?", (conv_id,)).fetchone()
    if row is None:
        return None
    kind = str(row[0])
    devices: dict[str, list[int]] = {}
    for account, device in conn.execute(
        "SELECT m.account_id, d.device_id FROM members m"
        " LEFT JOIN devices d ON d.account_id = m.account_id"
        " WHERE m.conv_id = ? ORDER BY m.joined_seq, m.rowid, d.device_id",
        (conv_id,),
    ):
        ids = devices.setdefault(account, [])
        if device is not None:
            ids.append(device)
    blockers: dict[str, set[str]] = {}
    if kind == "direct":
        for blocker, blocked in conn.execute(
            "SELECT b.blocker, b.blocked FROM blocks b JOIN members m"
            " ON m.conv_id = ? AND m.account_id = b.blocker",
            (conv_id,),
        ):
            blockers.setdefault(blocked, set()).add(blocker)
    facts = Fanout(kind, {a: tuple(ids) for a, ids in devices.items()}, blockers)
    if cache is not None:
        cache.remember_fanout(conv_id, facts)
    return facts


#: An Append's outcome within a batch: the envelope, the recipients and whether a duplicate.
_Outcome = tuple[Appended] | Exception


def append_many(conn: sqlite3.Connection, items: list[tuple[NewMessage, int]]) -> list[_Outcome]:
    """Store the Sends ``items`` (each with its sender's quota) together. Each is checked in
    order (its id, device list, quota and membership; a refused one writes nothing), then the
    accepted ones are written with one statement per conversation for their seqs, one per
    sender for its stored bytes and members row, and ``executemany`` for the envelopes and
    their pending rows (each with its device's own ciphertext). Seqs are gapless and follow
    the order of ``items`` within each conversation. The writer runs the Sends queued back to
    back through this (:meth:`Database._write_batched`)."""
    outcomes: list[_Outcome | None] = [None] * len(items)
    #: accepted: (index, message, size, fanout)
    accepted: list[tuple[int, NewMessage, int, Fanout]] = []
    #: ids accepted in this batch → index of the first
    taken: dict[bytes, int] = {}
    charged: dict[str, int] = {}  # sender → bytes stored now, after this batch's accepted ones
    raw_ids = [m.id.bytes for m, _ in items]
    already = _stored_ids(conn, raw_ids)
    for index, (m, quota) in enumerate(items):
        try:
            raw_id = raw_ids[index]
            first = taken.get(raw_id)
            if first is not None:
                if items[first][0].sender != m.sender:
                    raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
                accepted.append((index, m, -1 - first, _NO_FANOUT))  # a duplicate of first
                continue
            original = already.get(raw_id) if already else None
            if original is not None:
                if original[0] != m.sender:
                    raise Refused(ErrorCode.CONFLICT, "this message id is already taken")
                outcomes[index] = (
                    Appended(envelope_at(conn, original[1], original[2]), (), duplicate=True),
                )
                continue
            if m.device_payloads or m.devices_digest:
                kind, devices = send_facts(conn, m.conv, m.sender)
                check_device_list(kind, m, devices)
            extra = sum(len(payload) for _, payload in m.device_payloads)
            size = stored_size(m.payload, m.mentions, extra)
            stored = 0
            if quota > 0:
                known = charged.get(m.sender)
                stored = _stored(conn, m.sender) if known is None else known
                if stored + size > quota:
                    require_member(conn, m.conv, m.sender)  # a non-member hears that first
                    raise over_quota(quota)
            facts = fanout(conn, m.conv)
            if facts is None or m.sender not in facts.devices:
                require_member(conn, m.conv, m.sender)  # raises NOT_FOUND or NOT_MEMBER
                if isinstance(conn, WriterConnection):  # a member after all: read again
                    conn.forget(m.conv)
                facts = fanout(conn, m.conv)
                if facts is None:
                    raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
            if quota > 0:
                charged[m.sender] = stored + size
        except Refused as refused:
            outcomes[index] = refused
            continue
        except StaleDeviceList as stale:
            outcomes[index] = stale
            continue
        taken[raw_id] = index
        accepted.append((index, m, size, facts))
    if accepted:
        _write_appends(conn, accepted, outcomes)
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(items)  # every Send has its outcome
    return done


#: Most ids one lookup of already stored messages names (SQLite allows 32,766 parameters).
_IDS_PER_LOOKUP = 500
#: The stored messages among some ids (``{marks}``: one placeholder per id), read from the
#: envelopes_by_id index alone: its entries carry the envelope's key (conv_id, seq).
STORED_IDS_SQL = "SELECT id, sender, conv_id, seq FROM envelopes WHERE id IN ({marks})"


def _stored_ids(
    conn: sqlite3.Connection, raw_ids: list[bytes]
) -> dict[bytes, tuple[str, str, int]]:
    """The messages among ``raw_ids`` that are stored already: id → (sender, conversation,
    seq). One statement per _IDS_PER_LOOKUP ids instead of one per Send."""
    found: dict[bytes, tuple[str, str, int]] = {}
    unique = list(dict.fromkeys(raw_ids))
    for start in range(0, len(unique), _IDS_PER_LOOKUP):
        chunk = unique[start : start + _IDS_PER_LOOKUP]
        marks = ", ".join("?" * len(chunk))
        for raw_id, sender, conv_id, seq in conn.execute(STORED_IDS_SQL.format(marks=marks), chunk):
            found.setdefault(raw_id, (sender, conv_id, seq))
    return found


def _stored(conn: sqlite3.Connection, account: str) -> int:
    row = conn.execute("SELECT stored_bytes FROM accounts WHERE id = ?", (account,)).fetchone()
    return 0 if row is None else int(row[0])


_NO_FANOUT = Fanout("group", {}, {})


def _write_appends(
    conn: sqlite3.Connection,
    accepted: list[tuple[int, NewMessage, int, Fanout]],
    outcomes: list[_Outcome | None],
) -> None:
    """Write the checked Sends of :func:`append_many`."""
    counts: dict[str, int] = {}
    for _, m, size, _ in accepted:
        if size >= 0:
            counts[m.conv] = counts.get(m.conv, 0) + 1
    # The seqs of each conversation: one statement for all its messages of this batch.
    next_of: dict[str, int] = {}
    for conv, count in counts.items():
        (head,) = conn.execute(
            "UPDATE conversations SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq",
            (count, conv),
        ).fetchone()
        next_of[conv] = head - count + 1
    envelope_rows: list[tuple[Any, ...]] = []
    pending_rows: list[tuple[Any, ...]] = []
    sizes: dict[str, int] = {}
    last_sent: dict[tuple[str, str], int] = {}
    for index, m, size, facts in accepted:
        if size < 0:  # the same id twice in this batch: the first one's envelope
            first = outcomes[-1 - size]
            assert isinstance(first, tuple)
            outcomes[index] = (Appended(first[0].envelope, (), duplicate=True),)
            continue
        seq = next_of[m.conv]
        next_of[m.conv] = seq + 1
        envelope = m.envelope(seq)
        envelope_rows.append(
            (
                m.conv,
                seq,
                m.id.bytes,
                m.sender,
                m.sender_device,
                m.ts,
                "msg",
                m.payload,
                msgspec.json.encode(envelope.mentions).decode() if m.mentions else None,
                size,
            )
        )
        sizes[m.sender] = sizes.get(m.sender, 0) + size
        last_sent[(m.conv, m.sender)] = seq
        own = dict(m.device_payloads) if m.device_payloads else None
        blockers = facts.blockers.get(m.sender) if facts.blockers else None
        recipients: list[str] = []
        for account, device_ids in facts.devices.items():
            if blockers is not None and account in blockers:
                continue
            queued = False
            for device in device_ids:
                if account == m.sender and device == m.sender_device:
                    continue
                payload = own.get((account, device)) if own is not None else None
                pending_rows.append((account, device, m.conv, seq, m.ts, payload))
                queued = True
            if queued:
                recipients.append(account)
        outcomes[index] = (Appended(envelope, tuple(recipients), duplicate=False),)
    conn.executemany(
        f"INSERT INTO envelopes ({ENVELOPE_COLUMNS}, size)"  # noqa: S608  # constant column list
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        envelope_rows,
    )
    conn.executemany(
        "INSERT INTO pending (account_id, device_id, conv_id, seq, queued_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        pending_rows,
    )
    conn.executemany(
        "UPDATE accounts SET stored_bytes = stored_bytes + ? WHERE id = ?",
        [(size, sender) for sender, size in sizes.items()],
    )
    conn.executemany(
        "UPDATE members SET last_sent = ? WHERE conv_id = ? AND account_id = ?",
        [(seq, conv, sender) for (conv, sender), seq in last_sent.items()],
    )
