"""A look at the raw tables of a test server's store, for checks no API answers (what is, or
is no longer, stored).

The server processes of these tests keep their state in SQLite under ``data_dir``, or, in a
module that imports :func:`store_env` (a fixture: one leg per back end, the PostgreSQL one
marked ``postgres``), in a PostgreSQL database of the test's own: the inspector asks either.
Tables and columns are named as in the SQLite schema. (The unit tests' twin is
``tests/unit/server/backends.py``.)
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.standins.postgres import PostgresInspector, drop_database, fresh_database


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The store settings of a test's servers, once per back end (overrides the conftest's)."""
    if request.param == "sqlite":
        yield {}
        return
    dsn = fresh_database()
    try:
        yield {"TIDINGS_STORE": dsn}
    finally:
        drop_database(dsn)
