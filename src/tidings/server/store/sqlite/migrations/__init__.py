"""The SQLite schema of the server's store, as ordered migration steps.

``sqlite_v<N>.sql`` brings a database to version N (``PRAGMA user_version``); the shared runner
:func:`tidings.migrations.migrate` applies the ones a database lacks, each in its own
transaction. A new version is a new file here and a new name in :data:`SCRIPTS`; a published
file never changes.
"""

from __future__ import annotations

import importlib.resources

#: Schema scripts in order; script i brings the database to user_version i + 1.
SCRIPTS = (
    "sqlite_v1.sql",
    "sqlite_v2.sql",
    "sqlite_v3.sql",
    "sqlite_v4.sql",
    "sqlite_v5.sql",
    "sqlite_v6.sql",
    "sqlite_v7.sql",
)


def steps() -> list[str]:
    """The SQL text of every script, in order."""
    files = importlib.resources.files(__name__)
    return [files.joinpath(name).read_text(encoding="utf-8") for name in SCRIPTS]
