"""The client's channel store and signature rules, deterministic (no server): a post is kept
once per id and per seq, the cursor moves over contiguous posts only, a removed admin's earlier
posts stay genuine, flagged posts come out of history/search as ``verified=False``, and the
signed bytes check out with XEdDSA only for the exact post."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client import channel_store as cs
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.crypto import IdentityKeyPair
from tidings.protocol import channels as wire

ME = "acct-me"
OWNER = "acct-owner"
DEPUTY = "acct-deputy"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "tidings.db")
    s.set_account(Account(ME, "me", 1, "http://127.0.0.1:1"))
    s.account_id = ME
    yield s
    s.close()


def info(admins: list[tuple[str, str]], subscribers: int = 3) -> wire.ChannelInfo:
    return wire.ChannelInfo(
        id="ch1",
        title="News",
        handle="news",
        public=True,
        description="",
        owner=OWNER,
        admins=[wire.AdminInfo(a, a.removeprefix("acct-"), r) for a, r in admins],  # type: ignore[arg-type]
        subscribers=subscribers,
        head=0,
        created_at=1000,
        role="subscriber",
    )


def signed_post(key: IdentityKeyPair, seq: int, text: str, author: str = OWNER) -> wire.Post:
    post_id, content = uuid.UUID(int=seq), wire.encode_content(text)
    signature = key.calculate_signature(wire.signed_bytes("ch1", post_id, 5000 + seq, content))
    return wire.Post("ch1", seq, post_id, author, 1, 5000 + seq, 6000 + seq, content, signature)


def test_signature_covers_channel_id_ts_and_content() -> None:
    key = IdentityKeyPair.generate()
    post = signed_post(key, 1, "hello")
    ok = wire.signed_bytes(post.channel, post.id, post.ts, post.content)
    assert key.identity_key.verify_signature(ok, post.signature)
    for changed in (
        wire.signed_bytes("ch2", post.id, post.ts, post.content),
        wire.signed_bytes(post.channel, uuid.uuid4(), post.ts, post.content),
        wire.signed_bytes(post.channel, post.id, post.ts + 1, post.content),
        wire.signed_bytes(post.channel, post.id, post.ts, wire.encode_content("hellO")),
    ):
        assert not key.identity_key.verify_signature(changed, post.signature)
    other = IdentityKeyPair.generate()
    assert not other.identity_key.verify_signature(ok, post.signature)


def test_a_post_is_stored_once_and_the_cursor_is_contiguous(store: LocalStore) -> None:
    key = IdentityKeyPair.generate()
    db = store.db
    with store.transaction():
        cs.save_info(db, info([(OWNER, "owner")]), ME, now=0)
    conv = store.conversation("ch1")
    assert conv is not None and conv.kind == "channel" and conv.subscribers == 3
    assert not conv.is_admin
    with store.transaction():
        assert cs.store_post(db, signed_post(key, 1, "one"), "one", True, False)
        assert not cs.store_post(db, signed_post(key, 1, "one"), "one", True, False)
        assert cs.store_post(db, signed_post(key, 3, "three"), "three", False, False)
        assert cs.advance(db, "ch1") == 1  # 2 is missing: the cursor waits
        assert cs.store_post(db, signed_post(key, 2, "two"), "two", True, False)
        assert cs.advance(db, "ch1") == 3
    page = store.history("ch1", None, 10)
    assert [(m.body, m.seq, m.verified) for m in page.messages] == [
        ("one", 1, True),
        ("two", 2, True),
        ("three", 3, False),
    ]
    hits = store.search("three", 5)
    assert [(h.message.body, h.message.verified) for h in hits] == [("three", False)]


def test_a_removed_admin_still_signed_what_came_before(store: LocalStore) -> None:
    db = store.db
    with store.transaction():
        cs.save_info(db, info([(OWNER, "owner"), (DEPUTY, "admin")]), ME, now=100)
    assert cs.was_admin(db, "ch1", DEPUTY, 50)
    with store.transaction():
        cs.save_info(db, info([(OWNER, "owner")]), ME, now=200)
    assert cs.was_admin(db, "ch1", DEPUTY, 150)  # stored while an admin
    assert not cs.was_admin(db, "ch1", DEPUTY, 250)  # after the removal this device saw
    assert not cs.was_admin(db, "ch1", "acct-stranger", 50)
    assert cs.was_admin(db, "ch1", OWNER, 10**12)
    with store.transaction():  # made admin again
        cs.save_info(db, info([(OWNER, "owner"), (DEPUTY, "admin")]), ME, now=300)
    assert cs.was_admin(db, "ch1", DEPUTY, 400)


def test_own_posts_wait_in_order_and_are_accepted_once(store: LocalStore) -> None:
    db = store.db
    with store.transaction():
        cs.save_info(db, info([(ME, "owner")]), ME, now=0)
    for n in range(3):
        db.execute(
            "INSERT INTO channel_posts VALUES (?, 'ch1', NULL, ?, 1, ?, 0, x'00', ?, 1, 1)",
            (uuid.UUID(int=n).hex, ME, n, bytes(64)),
        )
    assert [p.id.int for _, p in cs.pending(db)] == [0, 1, 2]
    with store.transaction():
        assert cs.accept(db, uuid.UUID(int=0), 1, 10)
        assert not cs.accept(db, uuid.UUID(int=0), 1, 10)
        cs.fail(db, uuid.UUID(int=1), "forbidden")
    assert [p.id.int for _, p in cs.pending(db)] == [2]
