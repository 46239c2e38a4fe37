"""The embedded store: one SQLite file in WAL mode, written by one thread doing group commit.

One module per part of the state, each holding its SQL beside the code that runs it:

- ``writer``: the connections, the writer thread (group commit) and the reader pool
- ``accounts``: accounts, devices and their tokens
- ``conversations``: conversations, members and Sends
- ``envelopes``: stored envelopes, seq, the per-device pending queues and fetch
- ``receipts``: delivered and read watermarks
- ``keys``: the key directory and one-time key claims
- ``provisioning``: device linking and the to-device queues
- ``migrations``: the schema, one SQL script per version
- ``store``: :class:`SqliteStore`, all of the above together
"""

from tidings.server.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
