"""SQLite specifics: migrations, WAL, group commit."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import sqlite3
import uuid

import pytest

from tidings.server.store import NewMessage
from tidings.server.store.sqlite import SqliteStore, migrations
from tidings.server.store.sqlite.conversations import STORED_IDS_SQL


@pytest.fixture
def backend_kind() -> str:
    """SQLite specifics: the ``store`` of these tests is a SQLite one (this overrides the
    conftest's fixture parametrized over every back end)."""
    return "sqlite"


def test_the_migration_steps_are_the_packaged_scripts():
    steps = migrations.steps()
    assert len(steps) == len(migrations.SCRIPTS) >= 6
    assert all(step.strip() for step in steps)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 7])
async def test_an_older_database_is_migrated(tmp_path, version):
    path = tmp_path / "old.sqlite3"
    scripts = importlib.resources.files("tidings.server.store.sqlite.migrations")
    with contextlib.closing(sqlite3.connect(path)) as db:
        for name in migrations.SCRIPTS[:version]:
            db.executescript(scripts.joinpath(name).read_text())
        db.execute(f"PRAGMA user_version = {version}")
        db.execute("INSERT INTO accounts (id, username, created_at) VALUES ('a1', 'alice', 0)")
        db.commit()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.accounts_by_username(["alice"]))["alice"].account_id == "a1"
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(migrations.SCRIPTS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in db.execute("PRAGMA table_info(members)")}
        assert "marks_at" in columns
        indexes = {row[1]: row[2] for row in db.execute("PRAGMA index_list(envelopes)")}
        assert indexes.get("envelopes_by_id") == 1  # unique
        assert "envelopes_by_client_id" not in indexes
        assert db.execute("SELECT username FROM accounts").fetchall() == [("alice",)]


async def test_a_new_database_is_at_the_newest_version(tmp_path):
    store = SqliteStore(tmp_path / "new.sqlite3")
    await store.open()
    await store.close()
    await store.open()  # and opens again without migrating anything
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "new.sqlite3")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(migrations.SCRIPTS)


async def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "newer.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {len(migrations.SCRIPTS) + 1}")
    store = SqliteStore(path)
    with pytest.raises(RuntimeError, match="newer"):
        await store.open()


async def test_one_index_on_the_message_id_keeps_ids_unique_per_sender_and_finds_them(world):
    """A stored message dirties one random page of one index on its id: the unique
    (id, sender) index both refuses a second (sender, id) and answers the lookup of stored
    ids by itself, whoever the sender."""
    alice, bob = await world.account("alice"), await world.account("bob")
    record, _ = await world.engine.create_direct(alice, "bob")
    taken = uuid.uuid4()
    await world.store.append(NewMessage(taken, record.id, alice.account_id, 1, b"x", (), 0))
    path = world.store.path

    def columns(db: sqlite3.Connection, index: str) -> list[str]:
        return [row[2] for row in db.execute(f"PRAGMA index_info({index})")]

    with contextlib.closing(sqlite3.connect(path)) as db:
        secondary = {
            row[1]: row[2] for row in db.execute("PRAGMA index_list(envelopes)") if row[3] == "c"
        }
        assert secondary == {"envelopes_by_id": 1}
        assert columns(db, "envelopes_by_id") == ["id", "sender"]
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO envelopes (conv_id, seq, id, sender, sender_device, ts, kind, payload)"
                " VALUES (?, 99, ?, ?, 1, 0, 'msg', x'')",
                (record.id, taken.bytes, alice.account_id),
            )
        db.execute("ANALYZE")  # as the planner would see a long-lived database
        lookup = STORED_IDS_SQL.format(marks="?, ?")
        plan = [str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + lookup, (b"a", b"b"))]
        assert any("USING COVERING INDEX envelopes_by_id (id=?)" in step for step in plan), plan
        found = db.execute(lookup, (taken.bytes, uuid.uuid4().bytes)).fetchall()
        assert found == [(taken.bytes, alice.account_id, record.id, 2)]
    del bob


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
