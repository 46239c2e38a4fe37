"""PostgreSQL specifics of the social and channel tables: two stores on one database stand for
two server nodes posting to one channel, and ``tidings admin migrate-store`` carries profiles,
blocks, privacy settings, receipt times and channels over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.standins.postgres import drop_database, fresh_database

from tidings.server.channels.store import NewChannelPost
from tidings.server.store.postgres import PostgresStore
from tidings.server.store.postgres.transfer import copy_sqlite
from tidings.server.store.sqlite import SqliteStore

from .test_postgres_store import accounts, group, message

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn() -> Iterator[str]:
    made = fresh_database()
    try:
        yield made
    finally:
        drop_database(made)


@pytest.fixture
async def nodes(dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two server nodes."""
    first, second = PostgresStore(dsn), PostgresStore(dsn)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def post(channel: str, author: str, pid: uuid.UUID | None = None) -> NewChannelPost:
    return NewChannelPost(channel, pid or uuid.uuid4(), author, 1, 5, 6, b"c", b"s" * 64)


async def test_two_nodes_posting_to_one_channel_get_gapless_seqs_in_log_order(nodes):
    one, two = nodes
    (alice,) = await accounts(one, "alice")
    await one.create_channel("ch1", "News", None, True, "", alice, 1)
    await one.create_channel("ch2", "More", None, True, "", alice, 1)
    same = uuid.uuid4()  # one post sent to both nodes at once: stored once
    made = await asyncio.gather(
        *(
            (one if i % 2 else two).append_post(post("ch1" if i % 5 else "ch2", alice))
            for i in range(40)
        ),
        one.append_post(post("ch1", alice, same)),
        two.append_post(post("ch1", alice, same)),
    )
    assert sorted(a.duplicate for a in made[-2:]) == [False, True]
    assert made[-1].post.seq == made[-2].post.seq
    stored = [a for a in made if not a.duplicate]
    for channel in ("ch1", "ch2"):
        seqs = sorted(a.post.seq for a in stored if a.post.channel == channel)
        assert seqs == list(range(1, len(seqs) + 1))  # gapless, none twice
    log = await two.log_after(0, 100)
    assert [pos for pos, _ in log] == sorted(a.pos for a in stored)
    for channel in ("ch1", "ch2"):  # along the log, each channel's posts in seq order
        seqs = [p.seq for _, p in log if p.channel == channel]
        assert seqs == sorted(seqs)
    record = await two.channel("ch1")
    assert record is not None and record.last_seq == len(
        [a for a in stored if a.post.channel == "ch1"]
    )


async def test_two_nodes_subscribing_at_once_count_every_member_once(nodes):
    one, two = nodes
    names = [f"u{i}" for i in range(12)]
    ids = await accounts(one, "alice", *names)
    await one.create_channel("ch1", "News", None, True, "", ids[0], 1)
    await asyncio.gather(
        *((one if i % 2 else two).subscribe("ch1", account, 2) for i, account in enumerate(ids))
    )
    await asyncio.gather(*(two.subscribe("ch1", account, 3) for account in ids[1:4]))
    record = await one.channel("ch1")
    assert record is not None and record.subscribers == len(ids)


async def test_migrate_store_carries_social_and_channel_tables(tmp_path, dsn):
    path = tmp_path / "tidings.sqlite3"
    source = SqliteStore(path)
    await source.open()
    try:
        alice, bob = await accounts(source, "alice", "bob")  # type: ignore[arg-type]
        conv = await group(source, alice, [bob])  # type: ignore[arg-type]
        await source.append(message(conv, alice))
        await source.mark_read(bob, conv, 2, 77)
        await source.put_profile(alice, 3, b"sealed", 9)
        await source.block(bob, alice, 10)
        await source.set_privacy(bob, read_receipts=False, typing=None)
        await source.create_channel("ch1", "News", "news", True, "", alice, 11)
        await source.subscribe("ch1", bob, 12)
        first = await source.append_post(post("ch1", alice))
        await source.create_invite("tok", "ch1", alice, 13)
        await source.set_fanout_position("local", first.pos)
    finally:
        await source.close()
    copied = await copy_sqlite(path, dsn)
    assert copied["profiles"] == copied["blocks"] == copied["privacy_settings"] == 1
    assert copied["channels"] == copied["channel_posts"] == copied["channel_invites"] == 1
    assert copied["channel_members"] == 2 and copied["channel_fanout"] == 1
    store = PostgresStore(dsn)
    await store.open()
    try:
        profile = await store.profile(alice)
        assert profile is not None and (profile.version, profile.blob) == (3, b"sealed")
        assert [b.account_id for b in await store.blocked_accounts(bob)] == [alice]
        assert await store.privacy(bob) == (False, True)
        marks = {w.account: w for w in await store.watermarks(conv)}
        assert (marks[bob].read, marks[bob].read_at) == (2, 77)
        record = await store.channel_by_handle("news")
        assert record is not None and record.subscribers == 2 and record.last_seq == 1
        assert await store.invite_channel("tok") == "ch1"
        assert await store.fanout_position("local") == first.pos
        later = await store.append_post(post("ch1", alice))  # seq and position go on
        assert later.post.seq == 2 and later.pos > first.pos
        assert [pos for pos, _ in await store.log_after(0, 5)] == [first.pos, later.pos]
    finally:
        await store.close()
