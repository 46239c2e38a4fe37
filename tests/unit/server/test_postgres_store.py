"""PostgreSQL specifics: the migration runner, the guarantees between nodes (two stores on one
database stand for two server nodes), and ``tidings admin migrate-store``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from tests.standins.postgres import drop_database, fresh_database

from tidings.migrations import SchemaTooNew
from tidings.protocol import ErrorCode
from tidings.protocol.keys import KeyUpload, KyberPreKey, OneTimePreKey, SignedPreKey
from tidings.server.domain import NewConversation, NewDeviceLink, NewMessage, Refused
from tidings.server.store.postgres import PostgresStore, migrations
from tidings.server.store.postgres.conversations import STORED_IDS_SQL
from tidings.server.store.postgres.provisioning import _approve as approve_in
from tidings.server.store.postgres.transfer import TransferError, copy_sqlite
from tidings.server.store.sqlite import SqliteStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn() -> Iterator[str]:
    made = fresh_database()
    try:
        yield made
    finally:
        drop_database(made)


@pytest.fixture
async def nodes(dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two server nodes."""
    first, second = PostgresStore(dsn), PostgresStore(dsn)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def accounts(store: PostgresStore, *names: str) -> list[str]:
    ids = []
    for name in names:
        account_id = f"a_{name}"
        await store.create_account(
            account_id=account_id,
            username=name,
            device_name="primary",
            token_key=f"k_{name}",
            token_hash=b"h" * 32,
            now=1,
        )
        ids.append(account_id)
    return ids


async def group(store: PostgresStore, actor: str, others: list[str]) -> str:
    new = NewConversation("c1", uuid.uuid4(), actor, 1, 1)
    await store.create_group(new, "g", others, cap=100)
    return "c1"


def message(conv: str, sender: str, msg_id: uuid.UUID | None = None) -> NewMessage:
    return NewMessage(
        id=msg_id or uuid.uuid4(),
        conv=conv,
        sender=sender,
        sender_device=1,
        payload=b"x",
        mentions=(),
        ts=5,
    )


async def test_the_schema_is_versioned_per_component_and_reopens_without_migrating(dsn):
    store = PostgresStore(dsn)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        versions = dict(await conn.fetch("SELECT component, version FROM schema_versions"))
        assert versions == {
            "": len(migrations.SCRIPTS),
            **{name: len(scripts) for name, scripts in migrations.COMPONENTS.items()},
        }
        await conn.execute("UPDATE schema_versions SET version = 99 WHERE component = ''")
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew):
        await PostgresStore(dsn).open()


async def test_sends_from_two_nodes_get_gapless_seqs(nodes):
    one, two = nodes
    alice, bob = await accounts(one, "alice", "bob")
    conv = await group(one, alice, [bob])
    results = await asyncio.gather(
        *((one if i % 2 else two).append(message(conv, alice if i % 3 else bob)) for i in range(60))
    )
    assert sorted(r.envelope.seq for r in results) == list(range(2, 62))
    assert (await two.conversation(conv)).last_seq == 61


async def test_the_same_send_on_two_nodes_is_stored_once(nodes):
    one, two = nodes
    alice, bob = await accounts(one, "alice", "bob")
    conv = await group(one, alice, [bob])
    msg_id = uuid.uuid4()
    results = await asyncio.gather(
        *((one if i % 2 else two).append(message(conv, alice, msg_id)) for i in range(10))
    )
    assert {r.envelope.seq for r in results} == {2}
    assert sum(not r.duplicate for r in results) == 1
    assert (await one.conversation(conv)).last_seq == 2  # no seq lost to the duplicates


async def test_concurrent_claims_on_two_nodes_take_each_prekey_once(nodes):
    one, two = nodes
    (alice,) = await accounts(one, "alice")
    claimers = await accounts(one, *(f"c{i}" for i in range(20)))
    upload = KeyUpload(
        identity_key=b"\x05" + b"i" * 32,
        registration_id=7,
        signed_prekey=SignedPreKey(1, b"\x05" + b"s" * 32, b"g" * 64),
        kyber_last_resort=KyberPreKey(1, b"\x08" + b"k" * 1568, b"g" * 64),
        prekeys=[OneTimePreKey(i, b"\x05" + bytes([i]) * 32) for i in range(1, 11)],
    )
    await one.upload_keys(alice, 1, upload, 1)
    bundles = await asyncio.gather(
        *(
            (one if i % 2 else two).claim_keys((claimer, 1), {alice: []})
            for i, claimer in enumerate(claimers)
        )
    )
    taken = [b[0].devices[0].prekey for b in bundles if b[0].devices[0].prekey is not None]
    assert sorted(p.id for p in taken) == list(range(1, 11))  # ten keys, ten claimers
    assert (await two.key_counts(alice, 1)).prekeys == 0


async def test_the_same_direct_conversation_from_two_nodes_is_one(nodes):
    one, two = nodes
    alice, bob = await accounts(one, "alice", "bob")
    made = await asyncio.gather(
        one.create_direct(NewConversation("d1", uuid.uuid4(), alice, 1, 1), bob),
        two.create_direct(NewConversation("d2", uuid.uuid4(), bob, 1, 1), alice),
    )
    assert made[0][0].conversation.id == made[1][0].conversation.id
    assert sorted(created for _, created in made) == [False, True]


async def test_migrate_store_copies_every_table_and_refuses_a_full_target(tmp_path, dsn):
    path = tmp_path / "tidings.sqlite3"
    source = SqliteStore(path)
    await source.open()
    try:
        alice, bob = await accounts(source, "alice", "bob")  # type: ignore[arg-type]
        conv = await group(source, alice, [bob])  # type: ignore[arg-type]
        for _ in range(3):
            await source.append(message(conv, alice))
        await source.ack(bob, 1, {conv: 2}, 9)
        await source.set_group_adds(bob, "contacts")
    finally:
        await source.close()
    copied = await copy_sqlite(path, dsn)
    assert copied["accounts"] == 2 and copied["envelopes"] == 4 and copied["members"] == 2
    assert copied["pending"] == 3  # bob acked up to 2 of 4; alice has `created` pending
    store = PostgresStore(dsn)
    await store.open()
    try:
        record = await store.conversation(conv)
        assert record is not None and record.last_seq == 4
        assert [m.account_id for m in record.members] == [alice, bob]
        assert [e.seq for e in await store.pending(bob, 1, ("", 0), 10)] == [3, 4]
        assert await store.group_adds(bob) == "contacts"
        sent = await store.append(message(conv, bob))  # the seq goes on
        assert sent.envelope.seq == 5
        await store.create_group(NewConversation("c2", uuid.uuid4(), bob, 1, 1), "h", [alice], 9)
        again = await store.conversation("c2")
        assert again is not None and [m.account_id for m in again.members] == [bob, alice]
    finally:
        await store.close()
    with pytest.raises(TransferError, match="not empty"):
        await copy_sqlite(path, dsn)


async def test_a_nodes_sends_to_a_conversation_keep_their_order(nodes):
    one, _ = nodes
    alice, bob = await accounts(one, "alice", "bob")
    conv = await group(one, alice, [bob])
    results = await asyncio.gather(*(one.append(message(conv, alice)) for _ in range(20)))
    assert [r.envelope.seq for r in results] == list(range(2, 22))


async def test_batches_from_two_nodes_keep_seqs_gapless_and_each_nodes_order(nodes):
    # Each node's Sends of one event-loop turn go to the database as one batch per free lane;
    # the two nodes' batches meet on the same conversations' rows.
    one, two = nodes
    alice, bob, carol = await accounts(one, "alice", "bob", "carol")
    convs = []
    for i in range(3):
        new = NewConversation(f"g{i}", uuid.uuid4(), alice, 1, 1)
        await one.create_group(new, "g", [bob, carol], cap=100)
        convs.append(new.conv_id)
    sent = [
        (node, message(convs[i % 3], (alice, bob, carol)[i % 2 + (node is two)]))
        for i in range(90)
        for node in (one, two)
    ]
    before = one.transactions + two.transactions
    results = await asyncio.gather(*(node.append(m) for node, m in sent))
    assert one.transactions + two.transactions - before < len(sent) / 10  # batched
    assert not any(r.duplicate for r in results)
    for conv in convs:
        seqs = [r.envelope.seq for r in results if r.envelope.conv == conv]
        assert sorted(seqs) == list(range(2, 62))
        assert (await two.conversation(conv)).last_seq == 61
        for node in (one, two):  # a node's Sends to a conversation: seqs in the order sent
            mine = [
                r.envelope.seq
                for (n, m), r in zip(sent, results, strict=True)
                if n is node and m.conv == conv
            ]
            assert mine == sorted(mine)
        envelopes = await one.envelopes(conv, 0, 100)
        assert [e.seq for e in envelopes] == list(range(1, 62))
    # Every message queued for every device of every member but its sender's.
    for account in (alice, bob, carol):
        queued = await one.pending(account, 1, ("", 0), 1000)
        own = sum(1 for _, m in sent if m.sender == account)
        assert len(queued) == 3 + 180 - own  # the three creations, the others' messages


async def test_a_batch_keeps_each_sends_outcome_between_nodes(nodes):
    # A message sent on both nodes at once, in batches with others: stored once, and the
    # batch that lost the race answers with the original; refused Sends write nothing.
    one, two = nodes
    alice, bob, carol = await accounts(one, "alice", "bob", "carol")
    conv = await group(one, alice, [bob])
    shared, reused = uuid.uuid4(), uuid.uuid4()
    batch_one = [
        message(conv, alice),
        message(conv, alice, shared),
        message(conv, carol),  # not a member
        message(conv, bob, reused),
        message(conv, bob, reused),  # the same message twice in one batch
        message("gmissing", alice),
        message(conv, alice),
    ]
    batch_two = [message(conv, bob), message(conv, alice, shared), message(conv, bob, shared)]
    results = await asyncio.gather(
        *(one.append(m) for m in batch_one),
        *(two.append(m) for m in batch_two),
        return_exceptions=True,
    )
    refused = [r.code for r in results if isinstance(r, Refused)]
    assert sorted(refused) == sorted(
        [ErrorCode.NOT_MEMBER, ErrorCode.NOT_FOUND, ErrorCode.CONFLICT]
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert results[3].envelope.seq == results[4].envelope.seq  # one message, one seq
    assert results[4].duplicate and not results[3].duplicate
    assert results[1].envelope.seq == results[8].envelope.seq  # the shared id: stored once
    assert sorted([results[1].duplicate, results[8].duplicate]) == [False, True]
    assert isinstance(results[9], Refused)  # bob may not take alice's id
    fresh = sorted(r.envelope.seq for r in stored if not r.duplicate)
    assert fresh == list(range(2, 7))  # gapless: nothing of the refused ones was written
    assert [e.seq for e in await two.envelopes(conv, 0, 100)] == list(range(1, 7))
    assert await one.stored_bytes(carol) == 0
    assert await one.stored_bytes(alice) == 3  # three one-byte messages
    assert await one.stored_bytes(bob) == 2


async def test_the_quota_counts_each_nodes_batch_and_the_others_writes(nodes):
    one, two = nodes
    alice, bob = await accounts(one, "alice", "bob")
    conv = await group(one, alice, [bob])
    results = await asyncio.gather(
        *((one if i % 2 else two).append(message(conv, alice), quota=5) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert {r.code for r in results if isinstance(r, Refused)} == {ErrorCode.QUOTA_EXCEEDED}
    assert await two.stored_bytes(alice) == 5
    assert (await one.conversation(conv)).last_seq == 6


async def test_acks_batched_on_two_nodes_raise_each_watermark_to_the_highest(nodes):
    one, two = nodes
    alice, bob, carol = await accounts(one, "alice", "bob", "carol")
    conv = await group(one, alice, [bob, carol])
    for _ in range(6):
        await one.append(message(conv, alice))  # seqs 2 to 7
    acks = [(bob, 3), (carol, 7), (bob, 5), (carol, 2), (bob, 7), (bob, 4)]
    results = await asyncio.gather(
        *(
            (one if i % 2 else two).ack(who, 1, {conv: seq, "gmissing": seq}, 10 + i)
            for i, (who, seq) in enumerate(acks)
        )
    )
    marks = {w.account: (w.delivered, w.read) for w in await two.watermarks(conv)}
    assert (marks[bob], marks[carol]) == ((7, 0), (7, 0))
    moves = [move for moved in results for move in moved]
    assert {move.senders for move in moves} == {(alice,)}
    assert {max(m.delivered for m in moves if m.account == who) for who in (bob, carol)} == {7}
    assert await one.pending(bob, 1, ("", 0), 100) == []
    assert await two.pending(carol, 1, ("", 0), 100) == []


async def test_a_welcome_reports_marks_committed_after_it_with_an_earlier_time(nodes):
    # A Read whose time was taken before a Welcome's, committed after it (two connections,
    # two nodes): the next Welcome still reports it, although its time is older.
    one, two = nodes
    alice, bob = await accounts(one, "alice", "bob")
    conv = await group(one, alice, [bob])
    await one.append(message(conv, alice))  # seq 2
    assert [w.account for w in await two.welcome_watermarks(alice, 1, 100)] == [bob]
    await one.mark_read(bob, conv, 2, 50)
    marks = await two.welcome_watermarks(alice, 1, 110)
    assert [(w.account, w.delivered, w.read) for w in marks] == [(bob, 2, 2)]
    assert await two.welcome_watermarks(alice, 1, 120) == []  # told once


async def test_one_index_on_the_message_id_keeps_ids_unique_per_sender_and_finds_them(dsn):
    store = PostgresStore(dsn)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        indexes = dict(
            await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'envelopes'"
            )
        )
        assert set(indexes) == {"envelopes_pkey", "envelopes_by_id"}
        assert (
            "UNIQUE INDEX envelopes_by_id ON public.envelopes USING btree (id, sender)"
            in (indexes["envelopes_by_id"])
        )
        await conn.execute("SET enable_seqscan = off")  # as on a table too big to scan
        plan = "\n".join(
            row[0] for row in await conn.fetch("EXPLAIN " + STORED_IDS_SQL, [b"a", b"b"])
        )
        assert "envelopes_by_id" in plan, plan
    finally:
        await conn.close()


async def test_a_link_fetched_while_its_approval_commits_names_the_account(nodes, dsn):
    # The new device's fetch waits on the provisioning row while the approval (another node's
    # transaction) holds it, and reads it at its approved version once that commits: the
    # answer names the account, never a username left empty by the wait.
    one, two = nodes
    [alice] = await accounts(one, "alice")
    secret = b"s" * 32
    await one.create_provisioning("p1", secret, b"e" * 33, 10, 600)
    approval = NewDeviceLink(
        provisioning_id="p1", account_id=alice, device_name="laptop", ephemeral_key=b"e" * 33,
        sealed=b"sealed", placeholder_key="kp", placeholder_hash=b"p" * 32, max_devices=5, now=11,
    )  # fmt: skip
    raw = await asyncpg.connect(dsn)
    try:
        tx = raw.transaction()
        await tx.start()
        device_id = await approve_in(raw, approval)
        fetch = asyncio.create_task(two.fetch_provisioning("p1", secret, "kt", b"t" * 32, 12))
        await until_waiting_on_a_lock(dsn, fetch)
        assert not fetch.done(), "the fetch did not wait for the approval"
        await tx.commit()
        linked = await fetch
    finally:
        await raw.close()
    assert (linked.account_id, linked.username, linked.device_id) == (alice, "alice", device_id)
    assert linked.sealed == b"sealed"


async def until_waiting_on_a_lock(dsn: str, task: asyncio.Task[Any]) -> None:
    """Return once a session of the test's database waits for a lock (``task``, held up by the
    test's open transaction), or ``task`` has ended; gives up after about 5 s."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(500):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if waiting or task.done():
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def test_a_recovery_registration_retried_while_the_first_commits_gets_its_answer(nodes, dsn):
    # The first registration with a ticket (one node's transaction) holds the ticket while the
    # same registration, retried because its answer was lost, waits on another node: the retry
    # reads the ticket as used by that very token and answers the same device, not a conflict.
    one, two = nodes
    [alice] = await accounts(one, "alice")
    await one.vault_ticket(b"t" * 32, alice, 600)
    raw = await asyncpg.connect(dsn)
    try:
        tx = raw.transaction()
        await tx.start()
        await raw.execute(
            "SELECT 1 FROM vault_tickets WHERE ticket_hash = $1 FOR UPDATE", b"t" * 32
        )
        await raw.execute(
            "INSERT INTO devices (account_id, device_id, name, token_key, token_hash, created_at)"
            " VALUES ($1, 2, 'restored', 'newkey', $2, 10)",
            alice,
            b"h" * 32,
        )
        await raw.execute(
            "UPDATE vault_tickets SET device_id = 2, token_key = 'newkey' WHERE ticket_hash = $1",
            b"t" * 32,
        )
        retry = asyncio.create_task(
            two.vault_register(b"t" * 32, "newkey", b"h" * 32, "restored", 11, 5)
        )
        await until_waiting_on_a_lock(dsn, retry)
        assert not retry.done(), "the retry did not wait for the first registration"
        await tx.commit()
        registered = await retry
    finally:
        await raw.close()
    assert (registered.account_id, registered.username, registered.device_id) == (alice, "alice", 2)
