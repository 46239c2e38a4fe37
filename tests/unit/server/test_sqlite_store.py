"""SQLite specifics: migrations, WAL, group commit."""

from __future__ import annotations

import asyncio
import importlib.resources
import sqlite3
import uuid

from tidings.server.store import NewMessage, SqliteStore
from tidings.server.store.sqlite import MIGRATIONS


async def test_a_version_1_database_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    v1 = importlib.resources.files("tidings.server.store").joinpath("sqlite_v1.sql")
    with sqlite3.connect(path) as db:
        db.executescript(v1.read_text() + "\nPRAGMA user_version = 1;")
        db.execute("INSERT INTO accounts VALUES ('a1', 'alice', 0)")
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in db.execute("PRAGMA table_info(members)")}
        assert "marks_at" in columns
        assert db.execute("SELECT username FROM accounts").fetchall() == [("alice",)]


async def test_concurrent_appends_share_transactions(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    record, _ = await world.engine.create_direct(alice, "bob")
    before = world.store.transactions
    messages = [
        NewMessage(uuid.uuid4(), record.id, alice.account_id, 1, b"x", (), 0) for _ in range(500)
    ]
    results = await asyncio.gather(*(world.store.append(m) for m in messages))
    assert sorted(r.envelope.seq for r in results) == list(range(2, 502))
    # Far fewer transactions than messages: the writer grouped them.
    assert world.store.transactions - before < 100
    del bob


async def test_an_operation_failing_after_it_wrote_leaves_nothing_and_spares_its_group(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    record, _ = await world.engine.create_direct(alice, "bob")

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE conversations SET title = 'half' WHERE id = ?", (record.id,))
        raise RuntimeError("refused after writing")

    messages = [
        NewMessage(uuid.uuid4(), record.id, alice.account_id, 1, b"x", (), 0) for _ in range(20)
    ]
    writes = [world.store.append(m) for m in messages]
    writes.insert(10, world.store._write(half_then_fail))
    results = await asyncio.gather(*writes, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and str(failed[0]) == "refused after writing"
    appended = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(a.envelope.seq for a in appended) == list(range(2, 22))
    after = await world.store.conversation(record.id)
    assert after is not None and after.title == "" and after.last_seq == 21
    del bob
