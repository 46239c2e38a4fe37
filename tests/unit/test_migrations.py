"""The one schema migration runner shared by every SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tidings import migrations

STEPS: list[migrations.Step] = [
    "CREATE TABLE a (x INTEGER);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;",
    "ALTER TABLE a ADD COLUMN y TEXT;",
]


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_brings_a_new_database_to_the_last_step_once(tmp_path: Path) -> None:
    db = _db(tmp_path / "d.db")
    assert migrations.migrate(db, STEPS) == 0
    assert migrations.version(db) == 2
    assert migrations.migrate(db, STEPS) == 2  # nothing left to do
    db.execute("INSERT INTO a (x, y) VALUES (1, 'one')")


def test_components_keep_their_own_versions(tmp_path: Path) -> None:
    db = _db(tmp_path / "d.db")
    migrations.migrate(db, STEPS[:1])
    migrations.migrate(db, ["CREATE TABLE k (z INTEGER);"], component="keys")
    assert migrations.version(db) == 1
    assert migrations.version(db, "keys") == 1
    migrations.migrate(db, STEPS)
    assert migrations.version(db) == 2 and migrations.version(db, "keys") == 1


def test_a_failing_step_leaves_the_previous_version(tmp_path: Path) -> None:
    db = _db(tmp_path / "d.db")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        migrations.migrate(db, [*STEPS, broken])
    assert migrations.version(db) == 2
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables


def test_refuses_a_schema_from_the_future(tmp_path: Path) -> None:
    db = _db(tmp_path / "d.db")
    migrations.migrate(db, STEPS)
    with pytest.raises(migrations.SchemaTooNew):
        migrations.migrate(db, STEPS[:1])


def test_statements_split_around_trigger_bodies() -> None:
    parts = list(migrations.statements(STEPS[0]))
    assert len(parts) == 2 and parts[1].startswith("CREATE TRIGGER")
