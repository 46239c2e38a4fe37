"""The shared store: one PostgreSQL database that several server nodes may use at once, on
asyncpg. The same parts as the SQLite store, one module each with its SQL:

- ``database``: the pool and the transactions (retried after a conflict with another one)
- ``schema``: the migration runner (``schema_versions``, one transaction per step)
- ``accounts``, ``conversations``, ``envelopes``, ``receipts``, ``keys``, ``provisioning``,
  ``settings``: the :class:`~tidings.server.store.base.Store` protocol
- ``push``, ``media``, ``vault``, ``admin``, ``social``, ``channels``: the feature stores
- ``migrations``: the schema, one SQL script per version, and the feature components
- ``transfer``: ``tidings admin migrate-store``, a SQLite store copied into an empty database
- ``store``: :class:`PostgresStore`, all of the above together
"""

from tidings.server.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
