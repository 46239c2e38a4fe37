"""The local store: schema, migrations, FTS5 triggers, pages, effects."""

from __future__ import annotations

import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from tidings.client.core import engine
from tidings.client.core.opening import OpenedEnvelope, StoreOpened
from tidings.client.core.payload import open_payload
from tidings.client.store import MIGRATIONS, LocalStore, private_dir
from tidings.client.types import Account, Message, MessageStatus
from tidings.migrations import statements
from tidings.protocol import Envelope, SystemEvent, encode, rest
from tidings.protocol.content import Reaction, Text, encode_content

ME = "me"
PEER = "peer"
C = "c1"


def opened(conv_id: str, envelopes: tuple[Envelope, ...] | list[Envelope]) -> StoreOpened:
    """What the opener makes of envelopes whose payloads are content in clear (these tests
    leave encryption out: tests/unit/e2ee/test_store_e2ee.py has it)."""
    return StoreOpened(
        conv_id,
        tuple(
            OpenedEnvelope(e, None if e.kind == "system" else open_payload(e.payload))
            for e in envelopes
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    s = LocalStore(tmp_path / "tidings.db")
    s.set_account(Account(ME, "alice", 1, "http://server"))
    s.save_conversation(
        rest.Conversation(
            id=C,
            kind="direct",
            title="",
            members=[rest.Member(ME, "alice", "member"), rest.Member(PEER, "bob", "member")],
            last_seq=0,
            created_at=10,
        )
    )
    return s


def incoming(seq: int, body: str = "", sender: str = PEER, conv: str = C) -> Envelope:
    return Envelope(
        conv=conv,
        seq=seq,
        id=uuid.uuid4(),
        sender=sender,
        sender_device=1,
        ts=1000 + seq,
        payload=encode_content(Text(body=body or f"message {seq}")),
    )


def get(store: LocalStore, msg_id: uuid.UUID) -> Message:
    message = store.message(msg_id)
    assert message is not None
    return message


def receive(store: LocalStore, *envelopes: Envelope) -> None:
    store.apply([opened(C, envelopes), engine.AdvanceCursor(C, envelopes[-1].seq)])


def fts_ids(store: LocalStore, word: str) -> set[int]:
    rows = store.db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (word,))
    return {r[0] for r in rows}


def test_migrations_from_an_empty_database(tmp_path: Path) -> None:
    s = LocalStore(tmp_path / "new.db")
    assert s.version == len(MIGRATIONS)
    tables = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "account",
        "conversations",
        "members",
        "messages",
        "attachments",
        "reactions",
        "outbox",
        "cursors",
        "watermarks",
        "messages_fts",
    } <= tables
    indexes = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"messages_conv_seq", "messages_conv_ord", "messages_unread"} <= indexes
    assert "messages_conv_created" not in indexes  # nothing asks for it (migration 6)
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.account() is None
    s.close()
    again = LocalStore(tmp_path / "new.db")  # reopening migrates nothing
    assert again.version == len(MIGRATIONS)


def test_a_failed_migration_leaves_the_database_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "tidings.client.store.MIGRATIONS",
        (*MIGRATIONS, "CREATE TABLE t (a);\nCREATE TABLE messages (x);"),
    )
    with pytest.raises(sqlite3.OperationalError):
        LocalStore(tmp_path / "x.db")
    db = sqlite3.connect(tmp_path / "x.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] == 0


def test_fts_follows_insert_update_and_delete(store: LocalStore) -> None:
    receive(store, incoming(1, "the quick brown fox"))
    (pk,) = store.db.execute("SELECT pk FROM messages").fetchone()
    assert fts_ids(store, "quick") == {pk}
    store.db.execute("UPDATE messages SET body = 'a lazy dog' WHERE pk = ?", (pk,))
    assert fts_ids(store, "quick") == set()
    assert fts_ids(store, "lazy") == {pk}
    store.db.execute("DELETE FROM messages WHERE pk = ?", (pk,))
    assert fts_ids(store, "lazy") == set()
    store.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_search_marks_matches_and_survives_odd_queries(store: LocalStore) -> None:
    receive(store, incoming(1, "meet me at the café tomorrow"), incoming(2, "nothing here"))
    hits = store.search("cafe", 10)
    assert len(hits) == 1 and "[café]" in hits[0].snippet
    assert store.search("tomor", 10)[0].message.body == "meet me at the café tomorrow"
    assert store.search('"; DROP TABLE messages; --', 10) == []
    assert store.search("   ", 10) == []


def test_pages_walk_back_without_overlap(store: LocalStore) -> None:
    receive(store, *[incoming(s) for s in range(1, 106)])
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        page = store.history(C, before, 20)
        seqs = [m.seq for m in page.messages]
        assert seqs == sorted(seqs)
        seen[:0] = [s for s in seqs if s is not None]
        pages += 1
        if page.before is None:
            break
        before = page.before
    assert seen == list(range(1, 106))
    assert pages == 6


def test_unsent_messages_sort_last_then_take_their_seq(store: LocalStore) -> None:
    receive(store, incoming(1))
    mine = uuid.uuid4()
    store.apply([engine.StoreOutgoing(mine, C, b"x", Text(body="mine"), 5000)])
    receive(store, incoming(2))
    assert [m.body for m in store.history(C, None, 10).messages] == [
        "message 1",
        "message 2",
        "mine",
    ]
    changes = store.apply([engine.MarkSent(mine, C, 3, 5001, MessageStatus.SENT)])
    assert changes.updated == [mine]
    page = store.history(C, None, 10)
    assert [m.seq for m in page.messages] == [1, 2, 3]
    assert store.restored().outbox == []


def test_a_burst_of_own_texts_and_their_accepted_in_a_few_statements(
    store: LocalStore,
) -> None:
    """A run of texts is stored as one: each row once, in order, the built message equal to
    the row as read; one existing already and one deleted for everyone are left out, a
    duplicate in the run stored once. A run of Accepted marks each once, seq and status."""
    profiles_name = "Alice A."
    store.db.execute("INSERT INTO profiles (account_id, name) VALUES (?, ?)", (ME, profiles_name))
    first = uuid.uuid4()
    store.apply([engine.StoreOutgoing(first, C, b"x", Text(body="first"), 1)])
    gone = uuid.uuid4()
    store.db.execute("INSERT INTO message_tombstones VALUES (?)", (gone.hex,))
    ids = [uuid.uuid4() for _ in range(5)]
    texts = [Text(body=f"text {n}") for n in range(5)]
    texts[3] = Text(body="a reply", reply_to=first)
    burst = [
        engine.StoreOutgoing(i, C, b"p", t, 10 + n)
        for n, (i, t) in enumerate(zip(ids, texts, strict=True))
    ]
    burst[2:2] = [
        engine.StoreOutgoing(first, C, b"x", Text(body="again"), 11),
        engine.StoreOutgoing(gone, C, b"x", Text(body="deleted"), 11),
        engine.StoreOutgoing(ids[0], C, b"x", Text(body="twice"), 11),
    ]
    changes = store.apply(burst)
    assert changes.added == ids
    assert set(changes.built) == set(ids) - {ids[3]}  # the reply's preview is read
    for i, message in changes.built.items():
        assert message == get(store, i)
        assert message.sender_name == profiles_name
    assert get(store, ids[3]).reply_preview == f"{profiles_name}: first"
    assert get(store, first).body == "first" and store.message(gone) is None
    bodies = [m.body for m in store.history(C, None, 10).messages]
    assert bodies == ["first", "text 0", "text 1", "text 2", "a reply", "text 4"]
    assert store.search("text", 10)[0].message.id == ids[4]
    accepted = [engine.MarkSent(i, C, n, 100 + n, MessageStatus.SENT) for n, i in enumerate(ids, 1)]
    changes = store.apply([*accepted, accepted[0]])
    assert changes.updated == ids
    assert changes.sent == {i: (n, MessageStatus.SENT) for n, i in enumerate(ids, 1)}
    assert [(m.seq, m.status) for m in store.messages(ids)] == [
        (n, MessageStatus.SENT) for n in range(1, 6)
    ]
    assert {o.id for o in store.restored().outbox} == {first, gone}  # as one at a time


def test_page_around_a_search_hit(store: LocalStore) -> None:
    envelopes = [incoming(s) for s in range(1, 101)]
    receive(store, *envelopes)
    page = store.page_around(C, envelopes[49].id, 10)
    assert page is not None
    seqs = [m.seq for m in page.messages]
    assert 50 in seqs and len(seqs) == 10 and seqs == sorted(seqs)
    assert page.before == seqs[0]
    older = store.history(C, page.before, 10)
    assert older.messages[-1].seq == seqs[0] - 1
    first = store.page_around(C, envelopes[0].id, 10)
    assert first is not None and first.before is None and first.messages[0].seq == 1
    assert store.page_around(C, uuid.uuid4(), 10) is None


def test_incoming_is_stored_once(store: LocalStore) -> None:
    env = incoming(1)
    assert store.apply([opened(C, (env,))]).added == [env.id]
    assert store.apply([opened(C, (env,))]).added == []
    assert store.message(env.id) is not None


def test_statuses_only_move_forward(store: LocalStore) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for n, i in enumerate(ids, start=1):
        store.apply([engine.StoreOutgoing(i, C, b"x", Text(body=str(n)), n)])
        store.apply([engine.MarkSent(i, C, n, n, MessageStatus.SENT)])
    changes = store.apply([engine.Promote(C, 2, 1)])
    assert sorted(changes.updated) == sorted(ids[:2])
    statuses = [get(store, i).status for i in ids]
    assert statuses == [MessageStatus.READ, MessageStatus.DELIVERED, MessageStatus.SENT]
    store.apply([engine.Promote(C, 1, 0)])  # lower: nothing changes
    assert get(store, ids[0]).status is MessageStatus.READ
    # a late Accepted never lowers a status either
    store.apply([engine.MarkSent(ids[0], C, 1, 1, MessageStatus.SENT)])
    assert get(store, ids[0]).status is MessageStatus.READ


def test_failed_and_retried(store: LocalStore) -> None:
    i = uuid.uuid4()
    store.apply([engine.StoreOutgoing(i, C, b"x", Text(body="x"), 1)])
    store.apply([engine.MarkFailed(i, "not_member")])
    message = store.message(i)
    assert message is not None and message.status is MessageStatus.FAILED
    assert message.fail_reason == "not_member"
    assert store.restored().outbox == []
    store.apply([engine.StoreRetry(i, C, b"x")])
    assert get(store, i).status is MessageStatus.SENDING
    assert [o.id for o in store.restored().outbox] == [i]


def test_reactions_replies_and_system_sentences(store: LocalStore) -> None:
    first = incoming(1, "question?")
    receive(store, first)
    reply = uuid.uuid4()
    store.apply([engine.StoreOutgoing(reply, C, b"x", Text(body="answer", reply_to=first.id), 5)])
    message = store.message(reply)
    assert message is not None and message.reply_preview == "bob: question?"
    target = first.id
    react = Reaction(target=target, emoji="🎉")
    store.apply([engine.StoreOutgoing(uuid.uuid4(), C, b"x", react, 6)])
    theirs = Envelope(
        conv=C,
        seq=2,
        id=uuid.uuid4(),
        sender=PEER,
        sender_device=1,
        ts=7,
        payload=encode_content(react),
    )
    receive(store, theirs)
    assert get(store, target).reactions == (("🎉", ("alice", "bob")),)
    gone = Reaction(target=target, emoji="🎉", remove=True)
    store.apply([engine.StoreOutgoing(uuid.uuid4(), C, b"x", gone, 8)])
    assert get(store, target).reactions == (("🎉", ("bob",)),)
    system = Envelope(
        conv=C,
        seq=3,
        id=uuid.uuid4(),
        sender=PEER,
        sender_device=0,
        ts=9,
        kind="system",
        payload=encode(SystemEvent(action="member_added", actor=PEER, members=[ME])),
    )
    receive(store, system)
    assert get(store, system.id).body == "bob added alice"
    garbage = Envelope(
        conv=C, seq=4, id=uuid.uuid4(), sender=PEER, sender_device=1, ts=10, payload=b"\xc1"
    )
    assert store.apply([opened(C, (garbage,))]).added == []


def test_conversations_unread_and_read_marks(store: LocalStore) -> None:
    receive(store, incoming(1), incoming(2), incoming(3))
    conv = store.conversation(C)
    assert conv is not None
    assert conv.title == "bob" and conv.unread == 3 and not conv.is_admin
    assert conv.last_message is not None and conv.last_message.seq == 3
    store.apply([engine.StoreReadMark(C, 2)])
    assert store.conversation(C).unread == 1
    assert get(store, store.history(C, None, 5).messages[0].id).status is (MessageStatus.READ)
    store.left_conversation(C)
    assert store.conversations() == []


def test_restored_engine_state(store: LocalStore) -> None:
    store.apply(
        [
            engine.AdvanceCursor(C, 4),
            engine.AdvanceCursor(C, 2),  # never backwards
            engine.StoreWatermark(C, PEER, 4, 3),
        ]
    )
    restored = store.restored()
    assert restored.cursors == {C: 4}
    assert restored.members == {C: frozenset({ME, PEER})}
    assert restored.watermarks == {C: {PEER: (4, 3)}}


def test_migrates_a_version_1_database(tmp_path: Path) -> None:

    db = sqlite3.connect(tmp_path / "old.db")
    for statement in statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    s = LocalStore(tmp_path / "old.db")
    assert s.version == len(MIGRATIONS) >= 2
    names = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "messages_own_open" in names


def test_the_profile_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        profile = tmp_path / "deep" / "profile"
        private_dir(profile)
        s = LocalStore(profile / "tidings.db")
        s.set_account(Account("acc-1", "alice", 1, "http://x"))
        s.db.execute("PRAGMA wal_checkpoint")
        assert stat.S_IMODE(os.stat(profile).st_mode) == 0o700
        for name in ("tidings.db", "tidings.db-wal", "tidings.db-shm"):
            assert stat.S_IMODE(os.stat(profile / name).st_mode) == 0o600, name
        s.close()
        # an existing, too open directory and database are tightened
        os.chmod(profile, 0o755)
        os.chmod(profile / "tidings.db", 0o644)
        private_dir(profile)
        LocalStore(profile / "tidings.db").close()
        assert stat.S_IMODE(os.stat(profile).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(profile / "tidings.db").st_mode) == 0o600
    finally:
        os.umask(old)


def test_the_store_refuses_envelopes_that_were_not_opened(store: LocalStore) -> None:
    env = Envelope(conv=C, seq=1, id=uuid.uuid4(), sender="bob", sender_device=1, ts=1, payload=b"")
    with pytest.raises(TypeError):
        store.apply([engine.StoreIncoming(C, (env,))])


def test_migration_4_gives_the_clients_own_lines_their_kinds(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "v3.db", isolation_level=None)
    for script in MIGRATIONS[:3]:
        for statement in statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    rows = [
        ("a", "system", "This message could not be decrypted", None),
        ("b", "system", "Your safety number with bob changed", None),
        ("c", "system", "", b"meta"),
        ("d", "text", "This message could not be decrypted", None),
    ]
    for mid, kind, body, meta in rows:
        db.execute(
            "INSERT INTO messages (id, conv_id, ord, sender_id, is_own, kind, body, meta,"
            " status, created_at) VALUES (?, 'c', 1, 'bob', 0, ?, ?, ?, 'delivered', 1)",
            (mid, kind, body, meta),
        )
    db.close()
    s = LocalStore(tmp_path / "v3.db")
    kinds = dict(s.db.execute("SELECT id, kind FROM messages"))
    assert kinds == {"a": "undecryptable", "b": "identity_changed", "c": "system", "d": "text"}
    s.close()
