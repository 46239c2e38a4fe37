"""Every back end implements every method of the store protocols: :class:`Store` and the
feature stores beside it (push, media, vault, social, channels, the admin view, the quota
ledger), with the same parameters. A method added to a protocol and to one back end only fails
here, not on the first request a server on the other back end gets."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tidings.server.admin.records import AdminStore
from tidings.server.channels.store import ChannelStore
from tidings.server.media.quota import QuotaLedger
from tidings.server.media.service import BlobRecords
from tidings.server.push.store import PushStore
from tidings.server.social import SocialStore
from tidings.server.store.base import Store
from tidings.server.store.postgres import PostgresStore
from tidings.server.store.postgres.admin import PostgresAdmin
from tidings.server.store.postgres.media import PostgresQuotaLedger
from tidings.server.store.sqlite import SqliteStore
from tidings.server.store.sqlite.admin import SqliteAdmin
from tidings.server.store.sqlite.media import SqliteQuotaLedger
from tidings.server.vault.store import VaultStore

#: protocol → its implementation on each back end (sqlite, postgres)
IMPLEMENTATIONS: list[tuple[type[Any], type[Any], type[Any]]] = [
    (Store, SqliteStore, PostgresStore),
    (PushStore, SqliteStore, PostgresStore),
    (BlobRecords, SqliteStore, PostgresStore),
    (VaultStore, SqliteStore, PostgresStore),
    (SocialStore, SqliteStore, PostgresStore),
    (ChannelStore, SqliteStore, PostgresStore),
    (AdminStore, SqliteAdmin, PostgresAdmin),
    (QuotaLedger, SqliteQuotaLedger, PostgresQuotaLedger),
]


def protocol_methods(protocol: type[Any]) -> list[str]:
    """The public methods a protocol declares (its own and those of protocols it extends)."""
    names = set()
    for klass in protocol.__mro__:
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n, v in vars(klass).items() if callable(v) and not n.startswith("_")}
    return sorted(names)


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name != "self"
    ]


@pytest.mark.parametrize(
    ("protocol", "backends"),
    [(p, (s, g)) for p, s, g in IMPLEMENTATIONS],
    ids=[p.__name__ for p, _, _ in IMPLEMENTATIONS],
)
def test_every_back_end_implements_every_protocol_method(protocol, backends):
    methods = protocol_methods(protocol)
    assert methods, f"{protocol.__name__} declares no methods"
    for backend in backends:
        missing = [name for name in methods if not hasattr(backend, name)]
        assert not missing, f"{backend.__name__} lacks {protocol.__name__} methods {missing}"
        for name in methods:
            declared, implemented = getattr(protocol, name), getattr(backend, name)
            assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(
                declared
            ), f"{backend.__name__}.{name}: async or not as declared"
            assert parameters(implemented) == parameters(declared), (
                f"{backend.__name__}.{name} has other parameters than {protocol.__name__}.{name}"
            )


#: public methods only the SQLite store has, on purpose (none so far)
SQLITE_ONLY: frozenset[str] = frozenset()


def test_the_back_ends_offer_the_same_public_methods():
    """Beyond the protocols too: what one store offers, the other offers (but
    :data:`SQLITE_ONLY`)."""
    for sqlite, postgres in [(SqliteStore, PostgresStore), (SqliteAdmin, PostgresAdmin)]:
        ours = {n for n in dir(sqlite) if not n.startswith("_") and callable(getattr(sqlite, n))}
        theirs = {
            n for n in dir(postgres) if not n.startswith("_") and callable(getattr(postgres, n))
        }
        only = ours - theirs - SQLITE_ONLY
        assert not only, f"only {sqlite.__name__}: {sorted(only)}"
