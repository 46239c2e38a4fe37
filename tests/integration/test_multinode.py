"""Two server nodes behind HAProxy, on PostgreSQL and NATS (tests/integration/multinode_kit.py):
clients on different nodes talk 1:1 and in a group; a node is SIGKILLed mid-conversation and
every client carries on through the other, nothing lost or doubled, in order; sends through
both nodes keep a conversation's seq gapless; a device connecting to the second node replaces
its connection to the first (4409)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import ServerFactory, ServerKit
from tests.integration.multinode_kit import cluster

from tidings.client import Client
from tidings.client.types import MessageStatus
from tidings.protocol import Send
from tidings.protocol.close import CloseCode

pytestmark = [pytest.mark.multinode, pytest.mark.postgres]

PER_CLIENT = 60
#: send limits out of the way of a burst
UNLIMITED = {
    "TIDINGS_REQUIRE_E2EE": "false",
    **{
        f"TIDINGS_SEND_{kind}_{who}": "1000000"
        for kind in ("RATE", "BURST")
        for who in ("DEVICE", "ACCOUNT")
    },
}
DELIVERED = {MessageStatus.DELIVERED, MessageStatus.READ}


async def send_paced(client: Client, convs: list[str], name: str, ids: list[uuid.UUID]) -> None:
    for i in range(PER_CLIENT):
        message = await client.send_text(convs[i % len(convs)], f"{name} {i:03d}")
        ids.append(message.id)
        await asyncio.sleep(0.03)


@pytest.mark.timeout(300)
async def test_sigkill_one_node_mid_conversation(
    tmp_path: Path, server_factory: ServerFactory, wait_until: Any, full_history: Any
) -> None:
    with cluster(tmp_path, server_factory) as nodes:
        names = ["alice", "bob", "carol"]
        clients = [await Client.create_account(tmp_path / n, nodes.url, n) for n in names]
        try:
            for client in clients:
                await client.start()
                await client.wait_synced(timeout=30)
            alice, bob, carol = clients
            direct = (await alice.open_direct("bob")).id
            assert (await bob.open_direct("alice")).id == direct
            group = (await alice.create_group("trio", ["bob", "carol"])).id
            await wait_until(
                lambda: _member_of(carol, group), 20, "carol to see the group", every=0.05
            )
            # Round robin usually spreads the three sockets over both nodes, but REST calls
            # share its turns: the node holding the most sockets is the one killed below.
            counts = [nodes.connections(n) for n in nodes.nodes]
            assert sum(counts) == 3, counts

            ids: dict[str, list[uuid.UUID]] = {n: [] for n in names}
            plans = {"alice": [direct, group], "bob": [direct, group], "carol": [group]}
            senders = [
                asyncio.create_task(send_paced(c, plans[n], n, ids[n]))
                for c, n in zip(clients, names, strict=True)
            ]

            async def a_third_sent() -> bool:
                return _count(ids) >= PER_CLIENT

            await wait_until(a_third_sent, 60, "a third of the messages", every=0.01)
            held_by = [nodes.connections(n) for n in nodes.nodes]
            first = held_by.index(max(held_by))
            victim, survivor = nodes.nodes[first], nodes.nodes[1 - first]
            held = held_by[first]
            victim.kill()  # SIGKILL, mid-conversation
            await asyncio.gather(*senders)

            async def everyone_on_survivor() -> bool:
                return await asyncio.to_thread(nodes.connections, survivor) == 3

            await wait_until(everyone_on_survivor, 60, "all three clients on the survivor")

            async def all_delivered() -> bool:
                for client, name in zip(clients, names, strict=True):
                    for message_id in ids[name]:
                        message = await client.message(message_id)
                        if message is None or message.status not in DELIVERED:
                            return False
                return True

            await wait_until(all_delivered, 120, "every message delivered")
            await asyncio.sleep(0.5)
            expected = {
                direct: set(ids["alice"][0::2]) | set(ids["bob"][0::2]),
                group: set(ids["alice"][1::2]) | set(ids["bob"][1::2]) | set(ids["carol"]),
            }
            members = {direct: [alice, bob], group: clients}
            for conv, holders in members.items():
                for client in holders:
                    history = [m for m in await full_history(client, conv) if m.kind == "text"]
                    got = [m.id for m in history]
                    assert len(got) == len(set(got)), "a message shown twice"
                    assert set(got) == expected[conv]
                    seqs = [m.seq for m in history]
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq gaps"
            assert held >= 1  # the killed node did hold sockets
        finally:
            for client in clients:
                await client.close()


async def _member_of(client: Client, conv_id: str) -> bool:
    return any(c.id == conv_id for c in await client.conversations())


def _count(ids: dict[str, list[uuid.UUID]]) -> int:
    return sum(len(v) for v in ids.values())


@pytest.mark.timeout(120)
async def test_sends_through_both_nodes_keep_seq_gapless(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    with cluster(tmp_path, server_factory, env=UNLIMITED) as nodes:
        a, b = ServerKit(nodes.nodes[0]), ServerKit(nodes.nodes[1])
        try:
            x, y = await a.account("xavier"), await a.account("yvonne")
            conv = (await a.group(x, "busy", [y]))["id"]
            on_a, on_b = await a.connect(x), await b.connect(y)
            await on_a.hello()
            await on_b.hello()

            async def burst(peer: Any, n: int) -> list[int]:
                for _ in range(n):
                    await peer.send(Send(conv=conv, id=uuid.uuid4(), payload=b"x"))
                seqs = []
                while len(seqs) < n:
                    frame = await peer.recv(30)
                    if type(frame).__name__ == "Accepted":
                        seqs.append(frame.seq)
                return seqs

            first, second = await asyncio.gather(burst(on_a, 150), burst(on_b, 150))
            seqs = sorted(first + second)
            assert seqs == list(range(seqs[0], seqs[0] + 300))
        finally:
            await a.aclose()
            await b.aclose()


@pytest.mark.timeout(120)
async def test_connecting_to_the_other_node_replaces_the_first(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    with cluster(tmp_path, server_factory) as nodes:
        a, b = ServerKit(nodes.nodes[0]), ServerKit(nodes.nodes[1])
        try:
            zoe = await a.account("zoe")
            first = await a.connect(zoe)
            await first.hello()
            second = await b.connect(zoe)
            await second.hello()
            await asyncio.wait_for(first.ws.wait_closed(), 10)
            assert first.ws.close_code == CloseCode.REPLACED
            await second.ping()  # the newer one lives on
        finally:
            await a.aclose()
            await b.aclose()
