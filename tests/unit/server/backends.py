"""The store back ends the server's tests run on, and a look at each one's raw tables.

Tests get their store from the ``store`` fixture (``conftest.py``), parametrized by
:data:`BACKENDS`; where they must check what is (not) stored beyond what :class:`Store` methods
show, they ask the back end's :class:`Inspector`. A new back end (PostgreSQL) is a new class
here and a new name in :data:`BACKENDS`. The PostgreSQL leg runs on a real server
(``tests/standins/postgres.py``: one per session, a fresh database per test) and is marked
``postgres``: ``-m postgres`` runs only it, ``-m "not postgres"`` leaves it out.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Protocol

import pytest
from tests.standins.postgres import PostgresInspector, drop_database, fresh_database

from tidings.server.store import Store
from tidings.server.store.postgres import PostgresStore
from tidings.server.store.sqlite import SqliteStore

#: The back ends every store-agnostic test runs on (fixture params, with their marks).
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


class Inspector(Protocol):
    """Read-only questions about a store's tables (named as in the SQLite schema)."""

    def count(self, table: str, **where: Any) -> int:
        """Rows of ``table`` whose columns equal the ``where`` values."""

    def rows(self, table: str, columns: str, **where: Any) -> list[tuple[Any, ...]]:
        """``columns`` (comma-separated) of those rows, in storage order."""


class Backend(Protocol):
    name: str

    def store(self) -> Store:
        """A new, unopened store on this back end's data (the same data every time)."""

    def inspector(self) -> Inspector: ...

    def discard(self) -> None:
        """Remove the back end's data (at the end of the test)."""


class SqliteInspector:
    """Reads the SQLite file with a connection of its own (WAL: committed writes only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self, table: str, **where: Any) -> int:
        ((n,),) = self._select(table, "count(*)", where)
        return int(n)

    def rows(self, table: str, columns: str, **where: Any) -> list[tuple[Any, ...]]:
        return self._select(table, columns, where)

    def _select(self, table: str, columns: str, where: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql = f"SELECT {columns} FROM {table}"  # names come from the tests
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column in where)
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute(sql, tuple(where.values())).fetchall()


class SqliteBackend:
    name = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "tidings.sqlite3"

    def store(self) -> SqliteStore:
        return SqliteStore(self.path)

    def inspector(self) -> SqliteInspector:
        return SqliteInspector(self.path)

    def discard(self) -> None:
        pass  # the temporary directory goes by itself


class PostgresBackend:
    """A database of its own on the session's PostgreSQL server."""

    name = "postgres"

    def __init__(self) -> None:
        self.dsn = fresh_database()

    def store(self) -> PostgresStore:
        return PostgresStore(self.dsn)

    def inspector(self) -> PostgresInspector:
        return PostgresInspector(self.dsn)

    def discard(self) -> None:
        drop_database(self.dsn)


def backend(name: str, data_dir: Path) -> Backend:
    """The back end called ``name``, keeping its data in (or for) ``data_dir``."""
    if name == "sqlite":
        return SqliteBackend(data_dir)
    if name == "postgres":
        return PostgresBackend()
    raise ValueError(f"unknown store back end {name!r}")
