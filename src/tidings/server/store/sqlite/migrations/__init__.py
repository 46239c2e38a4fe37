"""The SQLite schema of the server's store, as ordered migration steps.

``sqlite_v<N>.sql`` brings a database to version N (``PRAGMA user_version``); the shared runner
:func:`tidings.migrations.migrate` applies the ones a database lacks, each in its own
transaction. A new version is a new file here and a new name in :data:`SCRIPTS`; a published
file never changes.

A feature with tables of its own (push registrations, media blobs, the history vault, channels)
keeps them in a *component*: ``<component>_v<N>.sql`` files listed in :data:`COMPONENTS`, with
their own version (the ``schema_versions`` table), applied after the main schema. Features then
add schema without taking numbers from each other.
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
    "sqlite_v8.sql",
)


#: Feature components: name → its scripts in order (script i brings it to version i + 1).
COMPONENTS: dict[str, tuple[str, ...]] = {
    "push": ("push_v1.sql",),
    "media": ("media_v1.sql",),
    "vault": ("vault_v1.sql",),
    "admin": ("admin_v1.sql",),
    "social": ("social_v1.sql",),
    "channels": ("channels_v1.sql", "channels_v2.sql"),
}


def _read(names: tuple[str, ...]) -> list[str]:
    files = importlib.resources.files(__name__)
    return [files.joinpath(name).read_text(encoding="utf-8") for name in names]


def steps() -> list[str]:
    """The SQL text of every script of the main schema, in order."""
    return _read(SCRIPTS)


def component_steps() -> dict[str, list[str]]:
    """Every component's scripts, by component name."""
    return {name: _read(scripts) for name, scripts in COMPONENTS.items()}
