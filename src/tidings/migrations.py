"""One schema migration runner for every SQLite database Tidings keeps (the server's store, the
client's profile and the device's key store).

A schema is an ordered list of steps; step *i* brings the database to version *i + 1*. A step is
an SQL script or a function of the connection (for data moves SQL cannot express). Each step runs
in its own transaction together with the version bump, so a crash mid-migration leaves the
database at the previous version, never between two.

The version lives in ``PRAGMA user_version`` for a database's main schema, or in a row of the
``schema_versions`` table for a component that shares a database with another (the key store in
the client's profile).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence

log = logging.getLogger(__name__)

#: An SQL script, or a function that changes the schema or moves data.
Step = str | Callable[[sqlite3.Connection], None]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of Tidings than this one."""


def version(db: sqlite3.Connection, component: str | None = None) -> int:
    """The schema version ``db`` is at (0 for a new database)."""
    if component is None:
        (found,) = db.execute("PRAGMA user_version").fetchone()
        return int(found)
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions"
        " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = db.execute(
        "SELECT version FROM schema_versions WHERE component = ?", (component,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, steps: Sequence[Step], component: str | None = None) -> int:
    """Bring ``db`` to ``len(steps)``; returns the version it had before.

    ``db`` must be in autocommit mode (``isolation_level=None``) with no transaction open.
    """
    before = version(db, component)
    if before > len(steps):
        name = component or "database"
        raise SchemaTooNew(f"{name} schema {before} is newer than this version knows")
    for index in range(before, len(steps)):
        step = steps[index]
        db.execute("BEGIN IMMEDIATE")
        try:
            if isinstance(step, str):
                for statement in statements(step):
                    db.execute(statement)
            else:
                step(db)
            _set_version(db, component, index + 1)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        log.info("%s schema migrated to version %d", component or "database", index + 1)
    return before


def _set_version(db: sqlite3.Connection, component: str | None, value: int) -> None:
    if component is None:
        db.execute(f"PRAGMA user_version = {int(value)}")
    else:
        db.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, value),
        )


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` knows that a
    trigger's body holds semicolons)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()
