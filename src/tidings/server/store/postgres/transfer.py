"""``tidings admin migrate-store``: a SQLite store copied, offline, into an empty PostgreSQL
database.

Every table of the PostgreSQL schema (the main one and every component) is filled from the
SQLite table of the same name in one transaction, in an order that satisfies the foreign keys;
SQLite's rowid becomes ``pos`` where an order depends on it, and the identity sequences go on
after the highest one copied. Each table's row count is compared with the source's before the
transaction commits: a difference, a target that already holds rows, or a SQLite table with rows
and no counterpart here aborts the copy and leaves the target as it was.

The server must be stopped (nothing may write to the SQLite file meanwhile), and the SQLite
schema must be current: the command opens the SQLite store once first, which migrates it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from tidings.server.store.postgres.schema import migrate

#: Tables in copy order (parents before children).
TABLES = (
    "accounts",
    "devices",
    "conversations",
    "members",
    "envelopes",
    "pending",
    "device_keys",
    "one_time_keys",
    "device_queue",
    "device_sends",
    "provisioning",
    "push_registrations",
    "notify_levels",
    "blobs",
    "blob_usage",
    "vault_keys",
    "vault_pages",
    "vault_tickets",
    "invites",
    "account_status",
    "profiles",
    "blocks",
    "privacy_settings",
    "channels",
    "channel_members",
    "channel_posts",
    "channel_invites",
    "channel_fanout",
)

#: Tables of the SQLite file that are not state (SQLite's own, the migration runner's).
_NOT_STATE = ("schema_versions", "sqlite_sequence", "sqlite_stat1")

#: rows per COPY batch
BATCH = 5000


class TransferError(RuntimeError):
    """The copy was refused or did not add up; the target is unchanged."""


def _sqlite_tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [
        str(row[0])
        for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(row[0]).startswith(_NOT_STATE)
    ]
    return {name: [str(c[1]) for c in db.execute(f"PRAGMA table_info({name})")] for name in names}


def _batches(db: sqlite3.Connection, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    cursor = db.execute(sql)
    while rows := cursor.fetchmany(BATCH):
        yield rows


async def copy_sqlite(source: Path, dsn: str) -> dict[str, int]:
    """Copy the SQLite store at ``source`` into the (migrated, empty) database at ``dsn``;
    returns the rows copied per table. Raises :class:`TransferError`."""
    try:
        opened = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.OperationalError as exc:
        raise TransferError(f"no SQLite store at {source}: {exc}") from exc
    with contextlib.closing(opened) as db:
        tables = _sqlite_tables(db)
        unknown = [t for t in tables if t not in TABLES]
        for table in unknown:
            (rows,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            if rows:
                raise TransferError(f"table {table} ({rows} rows) has no PostgreSQL counterpart")
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            async with conn.transaction():
                return await _copy(db, conn, tables)
        finally:
            await conn.close()


async def _copy(
    db: sqlite3.Connection, conn: asyncpg.Connection, tables: dict[str, list[str]]
) -> dict[str, int]:
    for table in TABLES:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # noqa: S608
            raise TransferError(f"the target is not empty: {table} has rows")
    copied: dict[str, int] = {}
    for table in TABLES:
        if table not in tables:
            copied[table] = 0  # a component the SQLite store never had
            continue
        target = [
            str(row[0])
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = $1 ORDER BY ordinal_position",
                table,
            )
        ]
        present = set(tables[table]) | {"pos"}
        columns = [c for c in target if c in present]
        select = ", ".join("rowid" if c == "pos" else c for c in columns)
        order = " ORDER BY rowid" if "pos" in columns else ""  # the order it depends on
        for rows in _batches(db, f"SELECT {select} FROM {table}{order}"):  # noqa: S608
            await conn.copy_records_to_table(table, records=rows, columns=columns)
        if "pos" in columns:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'pos'),"  # noqa: S608
                f" coalesce((SELECT max(pos) FROM {table}), 0) + 1, false)"
            )
        (expected,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        found = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        if found != expected:
            raise TransferError(f"{table}: {expected} rows in SQLite, {found} copied")
        copied[table] = found
    return copied
