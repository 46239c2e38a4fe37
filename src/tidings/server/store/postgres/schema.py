"""The migration runner of the PostgreSQL store: :mod:`tidings.migrations`' semantics on asyncpg.

A schema is an ordered list of SQL scripts; script *i* brings it to version *i + 1*. Each step
runs in its own transaction together with the version bump, so a crash mid-migration leaves the
database at the previous version, never between two. Versions live in ``schema_versions``, one
row per component (the main schema is the component ``""``). Nodes starting at the same time
take turns: every step holds a transaction-scoped advisory lock and reads the version under it,
so each step runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from tidings.migrations import SchemaTooNew
from tidings.server.store.postgres.migrations import component_steps, steps

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of schema changes ("tidings" in ASCII)
_LOCK = 0x7469_6469_6E67_73

#: the component name of the main schema in ``schema_versions``
MAIN = ""


async def version(conn: asyncpg.Connection, component: str = MAIN) -> int:
    """The version ``component`` is at (0 for a new database)."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions"
        " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    found = await conn.fetchval(
        "SELECT version FROM schema_versions WHERE component = $1", component
    )
    return 0 if found is None else int(found)


async def migrate_component(
    conn: asyncpg.Connection, scripts: Sequence[str], component: str = MAIN
) -> int:
    """Bring ``component`` to ``len(scripts)``; returns the version it had before."""
    before: int | None = None
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            current = await version(conn, component)
            if before is None:
                before = current
            if current > len(scripts):
                name = component or "database"
                raise SchemaTooNew(f"{name} schema {current} is newer than this version knows")
            if current == len(scripts):
                return before
            await conn.execute(scripts[current])  # a script of several statements
            await conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES ($1, $2)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                component,
                current + 1,
            )
        log.info("%s schema migrated to version %d", component or "database", current + 1)


async def migrate(conn: asyncpg.Connection) -> None:
    """The main schema, then every component."""
    await migrate_component(conn, steps())
    for component, scripts in component_steps().items():
        await migrate_component(conn, scripts, component)
