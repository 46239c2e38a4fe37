"""Load on the real server process: a 1,000-member group, and Send throughput."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tidings.protocol import Accepted, Envelope, Send

#: These tests speak the raw protocol with content in clear, which a server refuses by default
#: (``require_e2ee``), and load it far beyond a person's send rate: their servers accept both.
SERVER_ENV = {
    "TIDINGS_REQUIRE_E2EE": "false",
    "TIDINGS_SEND_RATE_DEVICE": "1000000",
    "TIDINGS_SEND_BURST_DEVICE": "1000000",
    "TIDINGS_SEND_RATE_ACCOUNT": "1000000",
    "TIDINGS_SEND_BURST_ACCOUNT": "1000000",
}


MEMBERS = 1000


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_post_reaches_every_member_of_a_1000_member_group(server, server_kit):
    kit = server_kit(server)
    started = time.perf_counter()
    # Few requests in flight: httpx's pool slows down badly with hundreds waiting on it.
    gate = asyncio.Semaphore(8)

    async def register(i):
        async with gate:
            return await kit.account(f"member{i:04d}")

    accounts = await asyncio.gather(*(register(i) for i in range(MEMBERS)))
    made_accounts = time.perf_counter()

    admin, others = accounts[0], accounts[1:]
    conv = await kit.group(admin, "everyone", others)
    assert len(conv["members"]) == MEMBERS
    gid = conv["id"]

    gate = asyncio.Semaphore(64)

    async def online(account):
        async with gate:
            peer = await kit.connect(account)
            welcome, replay, _ = await peer.hello()
        assert welcome.heads == {gid: 1}
        assert [e.seq for e in replay] == [1]
        return peer

    peers = await asyncio.gather(*(online(a) for a in accounts))
    connected = time.perf_counter()

    msg_id = uuid.uuid4()
    await peers[0].send(Send(id=msg_id, conv=gid, payload=b"hello, everyone"))
    accepted = await peers[0].expect(Accepted)
    assert accepted.seq == 2

    async def receive(peer):
        envelope = await peer.expect(Envelope, wait=30)
        assert (envelope.seq, envelope.id) == (2, msg_id)

    await asyncio.gather(*(receive(p) for p in peers[1:]))
    delivered = time.perf_counter()
    print(
        f"\n{MEMBERS} accounts in {made_accounts - started:.1f}s, "
        f"{MEMBERS} sockets synced in {connected - made_accounts:.1f}s, "
        f"fan-out to {MEMBERS - 1} in {(delivered - connected) * 1000:.0f}ms"
    )
    r = await kit.http.get(f"/v1/conversations/{gid}", headers=others[-1].headers)
    assert r.json()["last_seq"] == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_send_throughput(server, server_kit):
    """Pipelined Sends from 8 devices into 8 direct conversations are each accepted once, in
    order, with gapless seqs; prints the rate (speed is the benchmarks' business)."""
    kit = server_kit(server)
    pairs = []
    for i in range(8):
        sender = await kit.account(f"sender{i}")
        receiver = await kit.account(f"receiver{i}")
        conv = (await kit.direct(sender, receiver))["id"]
        peer = await kit.connect(sender)
        await peer.hello()
        pairs.append((peer, conv))
    per_sender = 1000

    async def blast(peer, conv):
        async def produce():
            for _ in range(per_sender):
                await peer.send(Send(id=uuid.uuid4(), conv=conv, payload=b"x" * 100))

        producer = asyncio.create_task(produce())
        seqs = [(await peer.until(Accepted, wait=60))[0].seq for _ in range(per_sender)]
        await producer
        assert sorted(seqs) == list(range(2, per_sender + 2))

    started = time.perf_counter()
    await asyncio.gather(*(blast(p, c) for p, c in pairs))
    elapsed = time.perf_counter() - started
    rate = len(pairs) * per_sender / elapsed
    print(f"\n{len(pairs) * per_sender} sends accepted in {elapsed:.2f}s: {rate:.0f} msgs/s")
