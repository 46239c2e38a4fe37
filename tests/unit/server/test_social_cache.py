"""Receipt privacy and blocks apply from the next receipt on, also once the store answers
privacy facts without a read (the SQLite store keeps which accounts have any)."""

from __future__ import annotations

import asyncio

from tidings.protocol import Receipt

from .test_social import direct, social  # fixture

__all__ = ["social"]


async def test_privacy_set_after_receipts_flowed_applies_to_the_next(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    for _ in range(3):
        await world.send(alice, conv)
    a = await world.online(alice)
    await world.engine.read(bob, conv, 2)
    assert [(r.delivered, r.read) for r in a.take() if isinstance(r, Receipt)] == [(2, 2)]
    await world.store.set_privacy(bob.account_id, False, None)
    await world.engine.read(bob, conv, 3)
    assert [(r.delivered, r.read) for r in a.take() if isinstance(r, Receipt)] == [(3, 0)]


async def test_a_block_after_receipts_flowed_applies_to_the_next(world, social):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    for _ in range(3):
        await world.send(alice, conv)
    a = await world.online(alice)
    await world.engine.ack(bob, {conv: 2})
    assert [r.delivered for r in a.take() if isinstance(r, Receipt)] == [2]
    await world.store.block(bob.account_id, alice.account_id, world.now())
    await world.engine.ack(bob, {conv: 3})
    assert [r for r in a.take() if isinstance(r, Receipt)] == []


async def test_the_first_receipts_of_a_group_ask_the_database_once(world, social, backend_kind):
    alice, bob, carol = [await world.account(n) for n in ("alice", "bob", "carol")]
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    reads = 0
    if backend_kind == "sqlite":  # the store that answers from memory once it has read
        read = world.store._read

        async def counted(fn):
            nonlocal reads
            reads += 1
            return await read(fn)

        world.store._read = counted
    answers = await asyncio.gather(
        *(
            world.store.privacy_facts(viewer.account_id, [alice.account_id], [group.id])
            for viewer in (bob, carol) * 10
        )
    )
    assert all(a.direct == frozenset() and not a.receipts_off for a in answers)
    if backend_kind == "sqlite":
        assert reads == 1
