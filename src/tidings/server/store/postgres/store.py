"""The :class:`~tidings.server.store.base.Store` on PostgreSQL, for several server nodes."""

from __future__ import annotations

from tidings.server.store.postgres.accounts import Accounts
from tidings.server.store.postgres.channels import Channels
from tidings.server.store.postgres.conversations import Conversations
from tidings.server.store.postgres.envelopes import Envelopes
from tidings.server.store.postgres.keys import Keys
from tidings.server.store.postgres.media import MediaBlobs
from tidings.server.store.postgres.provisioning import Provisioning
from tidings.server.store.postgres.push import PushRecords
from tidings.server.store.postgres.receipts import Receipts
from tidings.server.store.postgres.settings import AccountSettings
from tidings.server.store.postgres.social import Social
from tidings.server.store.postgres.vault import Vault


class PostgresStore(
    Accounts,
    Conversations,
    Envelopes,
    Receipts,
    Keys,
    Provisioning,
    AccountSettings,
    PushRecords,
    MediaBlobs,
    Vault,
    Social,
    Channels,
):
    """:class:`~tidings.server.store.base.Store` on one PostgreSQL database (a DSN,
    ``postgresql://...``).

    The same parts as :class:`~tidings.server.store.sqlite.SqliteStore`, each a module of this
    package with its SQL; all of them share one
    :class:`~tidings.server.store.postgres.database.Database` (the pool). Several server nodes
    may share the database: the guarantees hold between them (see ``database``).
    """
