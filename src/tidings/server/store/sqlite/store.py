"""The embedded :class:`~tidings.server.store.base.Store`: one SQLite file in WAL mode."""

from __future__ import annotations

from tidings.server.store.sqlite.accounts import Accounts
from tidings.server.store.sqlite.channels import Channels
from tidings.server.store.sqlite.conversations import Conversations
from tidings.server.store.sqlite.envelopes import Envelopes
from tidings.server.store.sqlite.keys import Keys
from tidings.server.store.sqlite.media import MediaBlobs
from tidings.server.store.sqlite.provisioning import Provisioning
from tidings.server.store.sqlite.push import PushRecords
from tidings.server.store.sqlite.receipts import Receipts
from tidings.server.store.sqlite.settings import AccountSettings
from tidings.server.store.sqlite.social import Social
from tidings.server.store.sqlite.vault import Vault


class SqliteStore(
    Accounts,
    Conversations,
    Envelopes,
    Receipts,
    Keys,
    Provisioning,
    AccountSettings,
    PushRecords,
    Vault,
    MediaBlobs,
    Social,
    Channels,
):
    """:class:`~tidings.server.store.base.Store` on one SQLite database file.

    Each part of the state is a module of this package with its SQL and the methods that run
    it; all of them share one :class:`~tidings.server.store.sqlite.writer.Database` (the
    writer thread and the readers). The rules they apply are :mod:`tidings.server.domain`'s.
    """
