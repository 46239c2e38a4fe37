"""Group adds need consent: an account that takes adds from contacts only refuses everyone
else (store, delivery and REST), and adds are rate-limited per adder and per target."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from tidings.protocol import ErrorCode
from tidings.server.app import create_app
from tidings.server.config import ConfigError, ServerConfig
from tidings.server.groupadds import GroupAddGate
from tidings.server.store import Refused


@pytest.fixture
def client(tmp_path):
    config = ServerConfig(data_dir=tmp_path, accounts_per_minute=1000)
    with TestClient(create_app(config)) as client:
        yield client


def _account(client: TestClient, username: str) -> dict[str, str]:
    created = client.post("/v1/accounts", json={"username": username})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def _is_api_error(answer, status: int) -> bool:
    return answer.status_code == status and set(answer.json()) == {"code", "message"}


async def _speak(world, device, conv):
    accepted = await world.send(device, conv)
    assert accepted.seq > 0


async def test_contacts_only_refuses_group_adds_from_strangers(world):
    world.engine.group_adds = GroupAddGate(
        world.store, per_adder_per_minute=1000, per_target_per_minute=1000
    )
    alice, bob, mallory = [await world.account(n) for n in ("alice", "bob", "mallory")]
    assert await world.store.group_adds(bob.account_id) == "everyone"
    await world.store.set_group_adds(bob.account_id, "contacts")
    assert await world.store.group_adds(bob.account_id) == "contacts"

    with pytest.raises(Refused) as refused:
        await world.engine.create_group(mallory, "spam", ["bob"])
    assert refused.value.code == ErrorCode.FORBIDDEN
    assert "bob only accepts group adds from contacts" in refused.value.message
    assert await world.count("conversations", kind="group") == 0

    # A direct conversation alone is not consent, nor is a message from the other side.
    direct, _ = await world.engine.create_direct(alice, "bob")
    await _speak(world, alice, direct.id)
    assert await world.store.refusing_group_adds(alice.account_id, [bob.account_id]) == [
        bob.account_id
    ]
    group = await world.engine.create_group(alice, "team", [])
    with pytest.raises(Refused) as refused:
        await world.engine.add_members(alice, group.id, ["bob"])
    assert refused.value.code == ErrorCode.FORBIDDEN
    # Bob answers: alice is a contact now.
    await _speak(world, bob, direct.id)
    added = await world.engine.add_members(alice, group.id, ["bob"])
    assert {m.account_id for m in added.members} == {alice.account_id, bob.account_id}
    with pytest.raises(Refused):
        await world.engine.create_group(mallory, "spam", ["bob"])
    await world.store.set_group_adds(bob.account_id, "everyone")
    await world.engine.create_group(mallory, "fine now", ["bob"])


async def test_group_adds_are_rate_limited_per_adder_and_per_target(world):
    now = [0.0]
    gate = GroupAddGate(
        world.store, per_adder_per_minute=3, per_target_per_minute=2, clock=lambda: now[0]
    )
    world.engine.group_adds = gate
    mallory, eve = await world.account("mallory"), await world.account("eve")
    victim = await world.account("victim")
    await world.account("x1")
    await world.account("x2")
    # Per target: the victim can be put in 2 groups a minute, whoever adds them.
    await world.engine.create_group(mallory, "g1", ["victim"])
    await world.engine.create_group(eve, "g2", ["victim"])
    with pytest.raises(Refused) as refused:
        await world.engine.create_group(eve, "g3", ["victim"])
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert "victim was added to too many groups" in refused.value.message
    # Per adder: mallory has added 1 of 3; two more fit, a third does not.
    await world.engine.create_group(mallory, "g4", ["x1", "x2"])
    with pytest.raises(Refused) as refused:
        await world.engine.create_group(mallory, "g5", ["eve"])
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert await world.count("conversations", kind="group") == 3
    now[0] += 60.0
    await world.engine.create_group(mallory, "g6", ["victim"])
    assert victim.account_id


def test_group_adds_setting_and_refusal_over_rest(client):
    alice = _account(client, "alice")
    bob = _account(client, "bob")
    mallory = _account(client, "mallory")
    assert client.get("/v1/settings", headers=bob).json()["group_adds"] == "everyone"
    answer = client.put("/v1/settings", json={"group_adds": "contacts"}, headers=bob)
    assert answer.status_code == 200 and answer.json()["group_adds"] == "contacts"
    assert client.get("/v1/settings", headers=bob).json()["group_adds"] == "contacts"
    assert client.get("/v1/settings", headers=alice).json()["group_adds"] == "everyone"
    bad = client.put("/v1/settings", json={"group_adds": "nobody"}, headers=bob)
    assert _is_api_error(bad, 400)
    unknown = client.put("/v1/settings", json={"color": "red"}, headers=bob)
    assert _is_api_error(unknown, 400)
    # An empty update changes nothing.
    assert client.put("/v1/settings", json={}, headers=bob).json()["group_adds"] == "contacts"

    refused = client.post("/v1/groups", json={"title": "spam", "members": ["bob"]}, headers=mallory)
    assert _is_api_error(refused, 403)
    assert refused.json()["code"] == ErrorCode.FORBIDDEN
    assert "only accepts group adds from contacts" in refused.json()["message"]
    group = client.post("/v1/groups", json={"title": "spam"}, headers=mallory).json()
    refused = client.post(
        f"/v1/groups/{group['id']}/members", json={"usernames": ["bob"]}, headers=mallory
    )
    assert refused.status_code == 403
    assert client.get("/v1/settings").status_code == 401


def test_group_add_limits_are_settings():
    config = ServerConfig()
    assert (config.group_adds_per_minute, config.group_adds_per_target_per_minute) == (300, 20)
    with pytest.raises(ConfigError):
        ServerConfig.load({"group_adds_per_target_per_minute": 0}, env={})
