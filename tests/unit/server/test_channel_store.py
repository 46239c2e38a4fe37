"""The channel store (:class:`~tidings.server.channels.store.ChannelStore`) on every back end of
``backends.BACKENDS``: channels and handles, members and roles, the post log with its seq and
global positions, invites, fan-out positions and push targets."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tidings.protocol import ErrorCode
from tidings.server.channels.store import ChannelAdmin, Membership, NewChannelPost
from tidings.server.domain import Refused
from tidings.server.push.store import StoredRegistration


async def account(world, name: str) -> str:
    return (await world.account(name)).account_id


def post(channel: str, author: str, content: bytes = b"hi", pid: uuid.UUID | None = None):
    return NewChannelPost(channel, pid or uuid.uuid4(), author, 1, 5, 6, content, b"s" * 64)


async def test_channels_members_and_roles(world):
    store = world.store
    alice, bob, carol = [await account(world, n) for n in ("alice", "bob", "carol")]
    made = await store.create_channel("ch1", "News", "news", True, "daily", alice, 10)
    assert (made.handle, made.public, made.subscribers, made.last_seq) == ("news", True, 1, 0)
    assert made.admins == (ChannelAdmin(alice, "alice", "owner"),)
    with pytest.raises(Refused) as refused:
        await store.create_channel("ch2", "Other", "news", True, "", bob, 11)
    assert refused.value.code == ErrorCode.CONFLICT
    await store.create_channel("ch2", "Private", None, False, "", bob, 11)
    assert (await store.channel_by_handle("news")).id == "ch1"  # type: ignore[union-attr]
    assert await store.channel("nope") is None and await store.channel_by_handle("x") is None

    await store.subscribe("ch1", bob, 12)
    await store.subscribe("ch1", bob, 13)  # idempotent
    await store.set_role("ch1", carol, "admin", 14)  # subscribes carol
    record = await store.channel("ch1")
    assert record is not None and record.subscribers == 3
    assert [a.role for a in record.admins] == ["owner", "admin"]
    assert await store.membership("ch1", carol) == Membership("admin", "none")
    await store.set_role("ch1", carol, "subscriber", 15)
    await store.set_role("ch1", "a_nobody", "subscriber", 15)  # nothing to do
    with pytest.raises(Refused):
        await store.set_role("ch1", alice, "subscriber", 15)
    with pytest.raises(Refused):
        await store.unsubscribe("ch1", alice)
    await store.set_channel_notify("ch1", bob, "all")
    assert await store.membership("ch1", bob) == Membership("subscriber", "all")
    assert [(c.id, m.role) for c, m in await store.channels_of(bob)] == [
        ("ch1", "subscriber"),
        ("ch2", "owner"),
    ]
    rows = await store.subscribers("ch1", "", 2)
    assert [r.account_id for r in rows] == sorted([alice, bob, carol])[:2]
    assert [r.account_id for r in await store.subscribers("ch1", rows[-1].account_id, 5)] == [
        sorted([alice, bob, carol])[2]
    ]
    await store.unsubscribe("ch1", carol)
    await store.unsubscribe("ch1", carol)  # not a member any more: nothing happens
    assert sorted(await store.subscriber_ids("ch1")) == sorted([alice, bob])
    assert (await store.channel("ch1")).subscribers == 2  # type: ignore[union-attr]


async def test_posts_invites_positions_and_push_targets(world):
    store = world.store
    alice, bob = await account(world, "alice"), await account(world, "bob")
    await store.create_channel("ch1", "News", None, False, "", alice, 1)
    await store.create_channel("ch2", "More", None, False, "", alice, 1)
    with pytest.raises(Refused) as refused:
        await store.append_post(post("ch1", bob))
    assert refused.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(Refused) as refused:
        await store.append_post(post("nope", alice))
    assert refused.value.code == ErrorCode.NOT_FOUND
    pid = uuid.uuid4()
    first = await store.append_post(post("ch1", alice, b"one", pid))
    again = await store.append_post(post("ch1", alice, b"other", pid))
    assert again.duplicate and again.post == first.post and again.pos == first.pos
    other = await store.append_post(post("ch2", alice))
    second = await store.append_post(post("ch1", alice, b"two"))
    assert [first.post.seq, other.post.seq, second.post.seq] == [1, 1, 2]
    assert first.pos < other.pos < second.pos == await store.log_end()
    assert [p.content for p in await store.posts_after("ch1", 0, 10)] == [b"one", b"two"]
    assert [p.seq for p in await store.posts_before("ch1", 3, 1)] == [2]
    assert [(pos, p.channel) for pos, p in await store.log_after(first.pos, 10)] == [
        (other.pos, "ch2"),
        (second.pos, "ch1"),
    ]
    assert (await store.channel("ch1")).last_seq == 2  # type: ignore[union-attr]

    await store.create_invite("tok", "ch1", alice, 3)
    assert await store.invite_channel("tok") == "ch1"
    assert not await store.revoke_invite("ch2", "tok", 4)  # another channel's
    assert await store.revoke_invite("ch1", "tok", 4)
    assert not await store.revoke_invite("ch1", "tok", 5)
    assert await store.invite_channel("tok") is None

    assert await store.fanout_position("local") == 0
    await store.set_fanout_position("local", 7)
    await store.set_fanout_position("local", 3)  # never backwards
    assert await store.fanout_position("local") == 7

    await store.subscribe("ch1", bob, 5)
    await store.set_push_registration(StoredRegistration(bob, 1, "fcm", "t", updated_at=5))
    assert await store.channel_push_targets("ch1") == []
    await store.set_channel_notify("ch1", bob, "all")
    assert [r.token for r in await store.channel_push_targets("ch1")] == ["t"]


async def test_concurrent_posts_get_gapless_seqs_in_log_order(world):
    store = world.store
    alice = await account(world, "alice")
    await store.create_channel("ch1", "News", None, True, "", alice, 1)
    await store.create_channel("ch2", "More", None, True, "", alice, 1)
    made = await asyncio.gather(
        *(store.append_post(post("ch1" if i % 3 else "ch2", alice)) for i in range(30))
    )
    for channel in ("ch1", "ch2"):
        seqs = sorted(a.post.seq for a in made if a.post.channel == channel)
        assert seqs == list(range(1, len(seqs) + 1))
    log = await store.log_after(0, 100)
    assert len(log) == 30
    for channel in ("ch1", "ch2"):  # each channel's posts in seq order along the log
        seqs = [p.seq for _, p in log if p.channel == channel]
        assert seqs == sorted(seqs)
