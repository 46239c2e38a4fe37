"""Broadcast channels on the real server, with the embedded queue and with NATS JetStream: a
post is stored once and reaches every subscriber once, in order, also across a SIGKILL of the
server in the middle of the fan-out; offline readers catch up from their cursor; only admins
post; a revoked invite link joins nobody."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.channel_kit import Reader, create_channel, drain, post
from tests.integration.conftest import free_port
from tests.integration.store_inspection import (
    POSTGRES_LEG,
    STORE_LEGS,
    default_store,
    inspector,
    store_settings,
)
from tests.standins.nats_server import nats_server

SERVER_ENV = {"TIDINGS_IDLE_TIMEOUT": "900"}


@pytest.fixture(params=["embedded", "nats"])
def queue_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Server settings for the queue under test: none (in-process) or a fresh nats-server."""
    if request.param == "embedded":
        yield {}
        return
    with nats_server(tmp_path / "nats", free_port()) as url:
        yield {"TIDINGS_NATS_URL": url, "TIDINGS_NATS_NODE": "node1"}


@pytest.fixture
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The servers' store: this run's (SQLite in data_dir, or in the PostgreSQL leg a database
    of the test's own), or for a test marked :data:`BOTH_STORES` the leg it names."""
    leg = getattr(request, "param", None)
    with default_store() if leg is None else store_settings(leg) as settings:
        yield settings


#: the light tests run on both store back ends; the 5,000-subscriber ones on the run's store
BOTH_STORES = pytest.mark.parametrize("store_env", STORE_LEGS, indirect=True)


async def _accounts(kit, prefix: str, n: int, parallel: int = 8):
    gate = asyncio.Semaphore(parallel)

    async def one(i: int):
        async with gate:
            return await kit.account(f"{prefix}{i:05d}")

    return await asyncio.gather(*(one(i) for i in range(n)))


async def _subscribe_all(kit, channel: str, accounts, parallel: int = 8) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(account) -> None:
        async with gate:
            r = await kit.http.post(
                f"/v1/channels/{channel}/subscription", json={}, headers=account.headers
            )
            assert r.status_code == 200, r.text

    await asyncio.gather(*(one(a) for a in accounts))


async def _connect_all(kit, accounts, parallel: int = 64):
    gate = asyncio.Semaphore(parallel)

    async def one(account):
        async with gate:
            peer = await kit.connect(account)
            await peer.hello()
            return peer

    return await asyncio.gather(*(one(a) for a in accounts))


async def _catch_up_all(http, readers, accounts, parallel: int = 16) -> None:
    """Every reader pages from its cursor, a few at a time: all at once, 1,500 requests wait
    for the client's 100 pooled connections, longer than its timeout on a busy machine."""
    gate = asyncio.Semaphore(parallel)

    async def one(reader, account) -> None:
        async with gate:
            await reader.catch_up(http, account.headers)

    await asyncio.gather(*(one(r, a) for r, a in zip(readers, accounts, strict=True)))


async def _read_all(peers, readers, until: int, wait: float) -> None:
    await asyncio.gather(
        *(drain(p.ws, r, until, wait) for p, r in zip(peers, readers, strict=True))
    )


@BOTH_STORES
async def test_only_admins_post_and_a_revoked_invite_joins_nobody(
    queue_env, server_factory, server_kit
):
    kit = server_kit(server_factory(env=queue_env))
    owner, admin, reader, stranger = await _accounts(kit, "c", 4)
    private = await create_channel(kit.http, owner.headers, "Insiders")
    cid = private["id"]
    assert private["role"] == "owner" and private["subscribers"] == 1

    # Private: invisible and unjoinable without an invite.
    r = await kit.http.get(f"/v1/channels/{cid}", headers=stranger.headers)
    assert r.status_code == 404
    r = await kit.http.post(f"/v1/channels/{cid}/subscription", json={}, headers=stranger.headers)
    assert r.status_code == 404

    r = await kit.http.put(f"/v1/channels/{cid}/admins/{admin.username}", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert [a["username"] for a in r.json()["admins"]] == [owner.username, admin.username]

    invite = (await kit.http.post(f"/v1/channels/{cid}/invites", headers=admin.headers)).json()
    r = await kit.http.post(f"/v1/channel-invites/{invite['token']}", headers=reader.headers)
    assert r.status_code == 200 and r.json()["role"] == "subscriber"
    assert r.json()["subscribers"] == 3

    # A subscriber cannot post, see the subscriber list or make invites; admins can.
    assert (await post(kit.http, reader.headers, cid, "hijack")).status_code == 403
    assert (await post(kit.http, stranger.headers, cid, "hijack")).status_code == 404
    r = await kit.http.get(f"/v1/channels/{cid}/subscribers", headers=reader.headers)
    assert r.status_code == 403
    assert (
        await kit.http.post(f"/v1/channels/{cid}/invites", headers=reader.headers)
    ).status_code == 403
    accepted = await post(kit.http, admin.headers, cid, "from an admin")
    assert accepted.status_code == 200 and accepted.json()["seq"] == 1
    r = await kit.http.get(f"/v1/channels/{cid}/subscribers", headers=admin.headers)
    assert sorted(s["username"] for s in r.json()["subscribers"]) == sorted(
        [owner.username, admin.username, reader.username]
    )

    # Revoked: the link no longer joins.
    r = await kit.http.delete(
        f"/v1/channels/{cid}/invites/{invite['token']}", headers=owner.headers
    )
    assert r.status_code == 204
    r = await kit.http.post(f"/v1/channel-invites/{invite['token']}", headers=stranger.headers)
    assert r.status_code == 404
    r = await kit.http.post(
        f"/v1/channels/{cid}/subscription",
        json={"invite": invite["token"]},
        headers=stranger.headers,
    )
    assert r.status_code == 404

    # Public: found by handle, joined by anyone; the count is visible to everyone.
    public = await create_channel(kit.http, owner.headers, "News", public=True, handle="news_desk")
    r = await kit.http.get("/v1/channel-handles/news_desk", headers=stranger.headers)
    assert r.status_code == 200 and r.json()["id"] == public["id"] and r.json()["role"] is None
    r = await kit.http.post(
        f"/v1/channels/{public['id']}/subscription", json={}, headers=stranger.headers
    )
    assert r.json()["subscribers"] == 2


@BOTH_STORES
async def test_offline_readers_catch_up_and_a_long_absence_may_skip_ahead(
    queue_env, server_factory, server_kit
):
    kit = server_kit(server_factory(env=queue_env))
    owner, online, offline = await _accounts(kit, "o", 3)
    cid = (await create_channel(kit.http, owner.headers, "Daily", public=True))["id"]
    await _subscribe_all(kit, cid, [online, offline])
    (peer,) = await _connect_all(kit, [online])
    live = Reader(cid)
    for i in range(30):
        assert (await post(kit.http, owner.headers, cid, f"post {i}")).status_code == 200
    await drain(peer.ws, live, 30, 10)
    assert live.stored == list(range(1, 31)) and set(live.live.values()) == {1}

    # The offline reader connects later and pages from its cursor.
    late = Reader(cid)
    await _connect_all(kit, [offline])
    await late.catch_up(kit.http, offline.headers)
    assert late.stored == list(range(1, 31))
    # Or, away long, reads the newest first and pages back from there.
    r = await kit.http.get(
        f"/v1/channels/{cid}/posts", params={"limit": 5}, headers=offline.headers
    )
    assert [p["seq"] for p in r.json()["posts"]] == [26, 27, 28, 29, 30]
    r = await kit.http.get(
        f"/v1/channels/{cid}/posts", params={"before": 26, "limit": 5}, headers=offline.headers
    )
    assert [p["seq"] for p in r.json()["posts"]] == [21, 22, 23, 24, 25]


#: A big channel: every post once and in order to every online reader, the offline ones
#: catching up from their cursor. That does not depend on the number, so each queue shows it
#: with 1,000 subscribers, and the scale itself, 5,000, is shown once: on the in-process queue
#: of the main run. Both queues walk the store's log through the same pump, so the PostgreSQL
#: leg, which is about the store, runs these heavy tests on one queue: NATS, as deployed with
#: several nodes (the queues themselves are held to the same tests in the main run).
BIG_CHANNELS = [
    pytest.param("nats", 1000, id="nats"),
    *([] if POSTGRES_LEG else [pytest.param("embedded", 5000, id="embedded")]),
]
HEAVY_QUEUES = ["nats"] if POSTGRES_LEG else ["embedded", "nats"]
POSTS = 50


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("queue_env", "subscribers"), BIG_CHANNELS, indirect=["queue_env"])
async def test_a_big_channel_gets_50_posts_once_in_order_to_every_subscriber(
    queue_env, subscribers, server_factory, server_kit
):
    offline_count = subscribers // 10
    kit = server_kit(server_factory(env=queue_env))
    started = time.perf_counter()
    owner, *members = await _accounts(kit, "s", subscribers + 1, parallel=16)
    cid = (await create_channel(kit.http, owner.headers, "Big", public=True))["id"]
    await _subscribe_all(kit, cid, members, parallel=16)
    online, offline = members[offline_count:], members[:offline_count]
    peers = await _connect_all(kit, online)
    set_up = time.perf_counter()
    info = (await kit.http.get(f"/v1/channels/{cid}", headers=online[0].headers)).json()
    assert info["subscribers"] == subscribers + 1

    readers = [Reader(cid) for _ in peers]
    reading = asyncio.ensure_future(_read_all(peers, readers, POSTS, 60))
    for i in range(POSTS):
        assert (await post(kit.http, owner.headers, cid, f"post {i}")).status_code == 200
    posted = time.perf_counter()
    await reading
    delivered = time.perf_counter()
    for reader in readers:
        assert reader.stored == list(range(1, POSTS + 1))
        assert set(reader.live.values()) == {1}, "a post came twice"

    # Offline readers catch up when they connect.
    late = [Reader(cid) for _ in offline[:100]]
    await asyncio.gather(
        *(r.catch_up(kit.http, a.headers) for r, a in zip(late, offline, strict=False))
    )
    assert all(r.stored == list(range(1, POSTS + 1)) for r in late)
    print(
        f"\nset-up {set_up - started:.1f}s; {POSTS} posts accepted in {posted - set_up:.2f}s; "
        f"all {len(peers)} online readers had all of them after {delivered - set_up:.2f}s"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("queue_env", HEAVY_QUEUES, indirect=True)
async def test_sigkill_mid_fanout_loses_and_duplicates_nothing(
    queue_env, server_factory, server_kit
):
    server = server_factory(env=queue_env)
    kit = server_kit(server)
    owner, *subscribers = await _accounts(kit, "k", 1501, parallel=16)
    cid = (await create_channel(kit.http, owner.headers, "Crash", public=True))["id"]
    await _subscribe_all(kit, cid, subscribers, parallel=16)
    peers = await _connect_all(kit, subscribers)
    readers = [Reader(cid) for _ in peers]
    reading = asyncio.ensure_future(_read_all(peers, readers, POSTS, 5))

    # 50 posts in flight at once; SIGKILL once 10 are accepted: the fan-out of those is under
    # way, others are stored without an answer, others not stored at all.
    ids = [uuid.uuid4() for _ in range(POSTS)]
    accepted: dict[uuid.UUID, int] = {}
    ten = asyncio.Event()

    async def send(i: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            r = await post(kit.http, owner.headers, cid, f"p{i}", post_id=ids[i])
            if r.status_code == 200:
                accepted[ids[i]] = r.json()["seq"]
                if len(accepted) >= 10:
                    ten.set()

    sending = [asyncio.ensure_future(send(i)) for i in range(POSTS)]
    await ten.wait()
    server.kill()
    await asyncio.gather(*sending)
    await reading
    held = sorted(r.cursor for r in readers)
    print(f"\nat the kill: {len(accepted)} accepted; readers held {held[0]}..{held[-1]}")

    server.start()
    kit2 = server_kit(server)
    # The poster resends what it has no answer for, under the same ids: stored once.
    for i, post_id in enumerate(ids):
        r = await post(kit2.http, owner.headers, cid, f"p{i}", post_id=post_id)
        assert r.status_code == 200
        assert accepted.setdefault(post_id, r.json()["seq"]) == r.json()["seq"]
    assert sorted(accepted.values()) == list(range(1, POSTS + 1))
    # Everybody reconnects: live frames from the resumed fan-out and the catch-up from the
    # cursor; the cursor keeps each post once.
    again = await _connect_all(kit2, subscribers)
    await _catch_up_all(kit2.http, readers, subscribers)
    await _read_all(again, readers, POSTS, 1)
    for reader in readers:
        assert reader.stored == list(range(1, POSTS + 1))
    rows = inspector(server).rows("channel_posts", "seq", channel=cid)
    assert sorted(seq for (seq,) in rows) == list(range(1, POSTS + 1))
