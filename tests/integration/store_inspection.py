"""A look at the raw tables of a test server's store, for checks no API answers (what is, or
is no longer, stored).

The server processes of these tests keep their state in SQLite under ``data_dir``, or, in a
module that imports :func:`store_env` (a fixture: one leg per back end, the PostgreSQL one
marked ``postgres``), in a PostgreSQL database of the test's own: the inspector asks either.
Tables and columns are named as in the SQLite schema. (The unit tests' twin is
``tests/unit/server/backends.py``.)

``TIDINGS_TEST_STORE=postgres`` runs the whole integration suite (``make test-postgres``), and
the e2e suite with it (``make test-postgres-all``), on PostgreSQL: every test's servers get a
database of their own (:func:`default_store`), the modules with both legs run only the
PostgreSQL one (:data:`STORE_LEGS`), and tests marked ``sqlite_only`` (about the SQLite store
itself) are deselected.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.standins.postgres import PostgresInspector, drop_database, fresh_database


def _test_store() -> str:
    leg = os.environ.get("TIDINGS_TEST_STORE", "sqlite") or "sqlite"
    if leg not in ("sqlite", "postgres"):
        raise RuntimeError(f"TIDINGS_TEST_STORE must be sqlite or postgres, not {leg!r}")
    return leg


#: whether this run is the PostgreSQL leg (``TIDINGS_TEST_STORE=postgres``)
POSTGRES_LEG = _test_store() == "postgres"

#: the store legs of a test that runs on both back ends: only PostgreSQL in the PostgreSQL leg
STORE_LEGS: list[Any] = [pytest.param("postgres", marks=pytest.mark.postgres)]
if not POSTGRES_LEG:
    STORE_LEGS.insert(0, "sqlite")


@contextlib.contextmanager
def store_settings(leg: str) -> Iterator[dict[str, str]]:
    """The server settings of a store leg: none (SQLite in the data directory) or a fresh
    PostgreSQL database of its own, dropped afterwards."""
    if leg == "sqlite":
        yield {}
        return
    dsn = fresh_database()
    try:
        yield {"TIDINGS_STORE": dsn}
    finally:
        drop_database(dsn)


def default_store() -> contextlib.AbstractContextManager[dict[str, str]]:
    """The store settings of a test that names no back end: this run's leg."""
    return store_settings(_test_store())


class SqliteInspector:
    """Reads the SQLite file with a connection of its own (WAL: committed writes only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self, table: str, **where: Any) -> int:
        """Rows of ``table`` whose columns equal the ``where`` values."""
        ((n,),) = self._select(table, "count(*)", where)
        return int(n)

    def rows(self, table: str, columns: str, **where: Any) -> list[tuple[Any, ...]]:
        """``columns`` (comma-separated) of those rows, in storage order."""
        return self._select(table, columns, where)

    def files(self) -> list[Path]:
        """The files on disk that hold the store: the database and its -wal and -shm."""
        names = (self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")))
        return [p for p in names if p.is_file()]

    def tables(self) -> set[str]:
        """The names of the store's tables."""
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def update(self, table: str, values: dict[str, Any], **where: Any) -> int:
        """Set ``values`` on the rows of ``table`` matching ``where`` (what an attacker with
        the database could do); returns how many rows changed."""
        sql = f"UPDATE {table} SET " + ", ".join(f"{column} = ?" for column in values)
        sql += " WHERE " + " AND ".join(f"{column} = ?" for column in where)
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            return db.execute(sql, (*values.values(), *where.values())).rowcount

    def _select(self, table: str, columns: str, where: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql = f"SELECT {columns} FROM {table}"  # names come from the tests
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column in where)
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute(sql, tuple(where.values())).fetchall()


def inspector(server: Any) -> SqliteInspector | PostgresInspector:
    """The inspector of a ``ServerProcess``'s store."""
    dsn = server.env.get("TIDINGS_STORE", "sqlite")
    if dsn != "sqlite":
        return PostgresInspector(dsn)
    return SqliteInspector(server.data_dir / "tidings.sqlite3")


@pytest.fixture(params=STORE_LEGS)
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The store settings of a test's servers, once per back end (overrides the conftest's)."""
    with store_settings(request.param) as settings:
        yield settings
