"""The device lists an end-to-end-encrypted Send is checked against follow every change of
membership and keys at once, also where the store keeps them between transactions (the SQLite
writer's cache): a send right after a change is judged by the new list."""

from __future__ import annotations

import uuid

from tidings.protocol import Accepted, ErrorCode, Rejected, Send, StaleDevices
from tidings.server.delivery import Device

from .test_e2ee import address, curve, digest, keyed, keys, upload  # fixture

__all__ = ["keys"]


async def post(world, sender: Device, conv: str, *devices: Device):
    frame = Send(id=uuid.uuid4(), conv=conv, payload=b"\x07sk", devices_digest=digest(*devices))
    return await world.engine.send(sender, frame)


async def test_membership_changes_reach_the_next_send(world, keys):
    alice, _ = await keyed(world, keys, "alice")
    bob, _ = await keyed(world, keys, "bob")
    dave, _ = await keyed(world, keys, "dave")
    group = await world.engine.create_group(alice, "g", ["bob"])
    assert isinstance(await post(world, alice, group.id, bob), Accepted)
    assert isinstance(await post(world, alice, group.id, bob), Accepted)  # from the cache

    await world.engine.add_members(alice, group.id, ["dave"])
    assert isinstance(await post(world, alice, group.id, bob), StaleDevices)
    assert isinstance(await post(world, alice, group.id, bob, dave), Accepted)
    assert isinstance(await post(world, dave, group.id, alice, bob), Accepted)

    await world.engine.remove_member(alice, group.id, "dave")
    assert isinstance(await post(world, alice, group.id, bob, dave), StaleDevices)
    assert isinstance(await post(world, alice, group.id, bob), Accepted)
    refused = await post(world, dave, group.id, alice, bob)
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.NOT_MEMBER

    await world.engine.leave(bob, group.id)
    assert isinstance(await post(world, alice, group.id), Accepted)
    refused = await post(world, bob, group.id, alice)
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.NOT_MEMBER


async def test_device_changes_reach_the_next_send(world, keys):
    alice, _ = await keyed(world, keys, "alice")
    bob, identity = await keyed(world, keys, "bob")
    record, _ = await world.engine.create_direct(alice, "bob")

    async def to(*devices: Device):
        payloads = {address(d): b"c" for d in devices}
        frame = Send(id=uuid.uuid4(), conv=record.id, payload=b"", device_payloads=payloads)
        return await world.engine.send(alice, frame)

    assert isinstance(await to(bob), Accepted)
    bob2 = await world.add_device(bob)
    assert isinstance(await to(bob), Accepted)  # no keys yet: not on the list
    await keys.upload(bob2, upload(identity))
    stale = await to(bob)
    assert isinstance(stale, StaleDevices) and stale.missing == [address(bob2)]
    assert isinstance(await to(bob, bob2), Accepted)

    assert await world.store.remove_device(bob.account_id, bob2.device_id)
    stale = await to(bob, bob2)
    assert isinstance(stale, StaleDevices) and stale.extra == [address(bob2)]
    assert isinstance(await to(bob), Accepted)

    # A new identity drops the other devices and their keys.
    await keys.upload(bob, upload(curve(), replace=True))
    assert isinstance(await to(bob), Accepted)
