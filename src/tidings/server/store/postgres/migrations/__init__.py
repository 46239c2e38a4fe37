"""The PostgreSQL schema of the server's store, as ordered migration steps.

``postgres_v<N>.sql`` brings the main schema to version N; a feature with tables of its own
keeps them in a *component* (``<component>_v<N>.sql`` files listed in :data:`COMPONENTS`), as
in the SQLite store, whose tables and column names these scripts repeat. Every version lives in
the ``schema_versions`` table (the main schema under the component name ``""``);
:func:`tidings.server.store.postgres.schema.migrate` applies the steps a database lacks, each
in its own transaction. A new version is a new file here and a new name in :data:`SCRIPTS`; a
published file never changes.
"""

from __future__ import annotations

import importlib.resources

#: Schema scripts in order; script i brings the main schema to version i + 1.
SCRIPTS = ("postgres_v1.sql", "postgres_v2.sql", "postgres_v3.sql")

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
