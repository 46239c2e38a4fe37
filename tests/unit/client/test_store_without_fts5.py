"""The client store on a SQLite without FTS5 (python-for-android's stock recipe): it opens,
migrates, stores and searches by a scan, with the FTS5 search's results.

No SQLite without FTS5 is at hand, so the connection's authorizer refuses the fts5 module
(creating an FTS5 table fails as it does there) and, for a store made with FTS5 before, any
use of its index (as "no such module: fts5" would): the store's own detection and fallback
are what runs."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tidings.client import fts
from tidings.client.core import engine
from tidings.client.core.opening import OpenedEnvelope, StoreOpened
from tidings.client.core.payload import open_payload
from tidings.client.store import MIGRATIONS, LocalStore
from tidings.client.types import Account
from tidings.protocol import Envelope, rest
from tidings.protocol.content import Text, encode_content

ME, PEER, C = "me", "peer", "c1"

BODIES = [
    "meet me at the café tomorrow",
    "Cafés in Zürich are CLOSED on sundays",
    "nothing here",
    "the quick brown fox jumps over the lazy dog and keeps running far away from here",
    "ÉCOLE d'été: tomorrow, again",
]
QUERIES = ["cafe", "tomor", "zurich closed", "CAFÉ", "lazy run", "ecole", "the", "nope", "é"]


def _deny_fts5(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action == sqlite3.SQLITE_CREATE_VTABLE and (arg2 or "").lower() == "fts5":
        return sqlite3.SQLITE_DENY
    if arg1 == "messages_fts" or arg2 == "messages_fts":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@pytest.fixture
def no_fts5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real: Callable[..., sqlite3.Connection] = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.set_authorizer(_deny_fts5)
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield


def incoming(seq: int, body: str) -> Envelope:
    return Envelope(
        conv=C,
        seq=seq,
        id=uuid.uuid4(),
        sender=PEER,
        sender_device=1,
        ts=1000 + seq,
        payload=encode_content(Text(body=body)),
    )


def receive(store: LocalStore, *envelopes: Envelope) -> None:
    opened = StoreOpened(C, tuple(OpenedEnvelope(e, open_payload(e.payload)) for e in envelopes))
    store.apply([opened, engine.AdvanceCursor(C, envelopes[-1].seq)])


def _filled(path: Path) -> LocalStore:
    s = LocalStore(path)
    s.set_account(Account(ME, "alice", 1, "http://server"))
    s.save_conversation(
        rest.Conversation(
            id=C,
            kind="direct",
            title="",
            members=[rest.Member(ME, "alice", "member"), rest.Member(PEER, "bob", "member")],
            last_seq=0,
            created_at=10,
        )
    )
    return s


def _results(store: LocalStore, query: str) -> list[tuple[str, list[str]]]:
    """(body, marked words) of each hit, in order."""
    return [
        (
            h.message.body,
            sorted(
                w.strip("[]").casefold()
                for w in fts._WORD.findall(h.snippet)
                if f"[{w}]" in h.snippet
            ),
        )
        for h in store.search(query, 10)
    ]


def test_detection(no_fts5: None) -> None:
    assert not fts.fts5_available(sqlite3.connect(":memory:"))


def test_a_new_store_runs_without_fts5_and_finds_what_fts5_finds(
    tmp_path: Path, no_fts5: None
) -> None:
    scan = _filled(tmp_path / "scan.db")
    assert scan.search_mode == "scan"
    assert scan.version == len(MIGRATIONS)
    names = {r[0] for r in scan.db.execute("SELECT name FROM sqlite_master")}
    assert not names & {"messages_fts", *fts.TRIGGERS}
    receive(scan, *(incoming(i + 1, body) for i, body in enumerate(BODIES)))
    hits = scan.search("cafe", 10)
    assert [h.message.body for h in hits] == [BODIES[1], BODIES[0]]
    assert hits[1].snippet == "meet me at the [café] tomorrow"
    assert scan.search("   ", 10) == []
    assert scan.search('"; DROP TABLE messages; --', 10) == []


def test_scan_and_fts5_give_the_same_hits(tmp_path: Path) -> None:
    with_fts = _filled(tmp_path / "fts.db")
    assert with_fts.search_mode == "fts5"
    receive(with_fts, *(incoming(i + 1, body) for i, body in enumerate(BODIES)))
    with pytest.MonkeyPatch.context() as patch:
        real = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            db = real(*args, **kwargs)
            db.set_authorizer(_deny_fts5)
            return db

        patch.setattr(sqlite3, "connect", connect)
        scan = _filled(tmp_path / "scan.db")
        assert scan.search_mode == "scan"
        receive(scan, *(incoming(i + 1, body) for i, body in enumerate(BODIES)))
    for query in QUERIES:
        assert _results(scan, query) == _results(with_fts, query), query
    for query in ("lazy", "cafe", "the", "tomorrow"):  # FTS5's snippets, here
        assert [h.snippet for h in scan.search(query, 10)] == [
            h.snippet for h in with_fts.search(query, 10)
        ], query


def test_a_store_made_with_fts5_opens_without_it_and_gets_its_index_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tidings.db"
    first = _filled(path)
    receive(first, incoming(1, "written with fts5"))
    first.close()
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.set_authorizer(_deny_fts5)
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
    second = LocalStore(path)
    assert second.search_mode == "scan"
    receive(second, incoming(2, "written by a scan store"))  # the triggers would refuse this
    assert [h.message.seq for h in second.search("written", 10)] == [2, 1]
    second.close()
    monkeypatch.setattr(sqlite3, "connect", real)
    third = LocalStore(path)
    assert third.search_mode == "fts5"
    assert [h.message.seq for h in third.search("scan", 10)] == [2]  # rebuilt
    third.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
