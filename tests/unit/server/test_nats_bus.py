"""The NATS bus: two nodes in one process talking through a real nats-server (routing to the
node that holds a socket, presence across nodes and its expiry when a node dies, replacement
of a device's older connection on another node, revocation)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from tests.standins.nats_server import nats_server

from tidings.server.bus import Delivery
from tidings.server.bus import nats as nats_bus
from tidings.server.bus.nats import NatsBus
from tidings.server.push.presence import PresenceBus


class Sub:
    def __init__(self, account_id: str, device_id: int) -> None:
        self.account_id = account_id
        self.device_id = device_id
        self.got: list[Delivery] = []
        self.closed: str | None = None

    def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def replaced(self) -> None:
        self.closed = "replaced"

    def revoked(self) -> None:
        self.closed = "revoked"


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


Nodes = Callable[[str], Awaitable[NatsBus]]


@pytest.fixture
async def node(nats_url: str) -> AsyncIterator[Nodes]:
    started: list[NatsBus] = []

    async def make(name: str) -> NatsBus:
        bus = NatsBus(nats_url, node=name)
        await bus.start()
        started.append(bus)
        return bus

    yield make
    for bus in started:
        await bus.stop()


async def test_frames_reach_the_node_that_holds_the_socket(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    alice_phone, alice_laptop, bob = Sub("alice", 1), Sub("alice", 2), Sub("bob-x.y", 1)
    await a.attach(alice_phone)
    await b.attach(alice_laptop)
    await b.attach(bob)
    await a.to_accounts(
        ["alice", "bob-x.y"],
        Delivery(b"all", "c1", 7),
        skip=("alice", 1),
        own={("alice", 2): Delivery(b"own", "c1", 7)},
    )
    await until(lambda: bool(alice_laptop.got and bob.got))
    assert alice_phone.got == []  # skipped, and not echoed back to node a
    assert alice_laptop.got == [Delivery(b"own", "c1", 7)]
    assert bob.got == [Delivery(b"all", "c1", 7)]
    await b.to_device("alice", 1, Delivery(b"one", dseq=3))
    await until(lambda: bool(alice_phone.got))
    assert alice_phone.got == [Delivery(b"one", dseq=3)]
    await asyncio.sleep(0.1)
    assert len(alice_laptop.got) == 1 and len(bob.got) == 1


async def test_presence_across_nodes(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    presence = PresenceBus(a, remote=a.live_elsewhere)
    connects: list[tuple[str, int]] = []
    presence.on_connect = connects.append
    a.on_remote_connect = presence.connected_elsewhere
    carol = Sub("carol", 4)
    await b.attach(carol)
    await until(lambda: presence.is_live("carol", 4))
    assert ("carol", 4) in connects and ("carol", 4) in presence.last_connect
    assert not b.live_elsewhere("carol", 4)  # b holds it itself
    await b.detach(carol)
    await until(lambda: not presence.is_live("carol", 4))


async def test_a_dead_nodes_devices_go_offline(
    node: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_bus, "HEARTBEAT", 0.1)
    monkeypatch.setattr(nats_bus, "NODE_TTL", 0.6)
    a, b = await node("a"), await node("b")
    dave = Sub("dave", 1)
    await b.attach(dave)
    await until(lambda: a.live_elsewhere("dave", 1))
    # b dies: no goodbye, its keys stay in the bucket
    for task in b._tasks:
        task.cancel()
    assert b._nc is not None
    await b._nc.close()
    b._kv = None
    await until(lambda: not a.live_elsewhere("dave", 1), within=3.0)
    # and a collects the dead instance's keys
    assert a._kv is not None
    await until(lambda: "d.dave.1" not in a._devices, within=5.0)


async def test_a_newer_connection_on_another_node_replaces_the_older(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    old, new = Sub("erin", 1), Sub("erin", 1)
    await a.attach(old)
    await b.attach(new)
    await until(lambda: old.closed is not None)
    assert old.closed == "replaced"
    await asyncio.sleep(0.2)
    assert new.closed is None
    await a.detach(old)  # the closed connection leaves; the newer one keeps its presence
    await asyncio.sleep(0.2)
    assert a.live_elsewhere("erin", 1)
    await a.to_accounts(["erin"], Delivery(b"x"))
    await until(lambda: bool(new.got))
    assert old.got == []


async def test_simultaneous_connects_leave_exactly_one(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    for round_ in range(5):
        first, second = Sub("fay", round_), Sub("fay", round_)
        await asyncio.gather(a.attach(first), b.attach(second))
        pair = (first, second)
        await until(lambda pair=pair: any(s.closed for s in pair))  # type: ignore[misc]
        await asyncio.sleep(0.2)
        assert [first.closed, second.closed].count("replaced") == 1


async def test_revoke_reaches_another_node(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    gus = Sub("gus", 2)
    await b.attach(gus)
    await a.revoke("gus", 2)
    await until(lambda: gus.closed == "revoked")


async def test_stop_leaves_no_presence(node: Nodes) -> None:
    a, b = await node("a"), await node("b")
    await b.attach(Sub("hal", 1))
    await until(lambda: a.live_elsewhere("hal", 1))
    await b.stop()
    await until(lambda: not a.live_elsewhere("hal", 1))
    with contextlib.suppress(Exception):
        await b.stop()


def test_tokens_are_safe_subjects() -> None:
    assert nats_bus.token("abc-DEF_1") == "abc-DEF_1"
    assert nats_bus.token("a.b*>") == "x" + b"a.b*>".hex()
