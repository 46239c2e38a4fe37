"""The server side of the everyday features: note to self (a direct conversation whose only
member is the account), encrypted to the account's other devices or, on its only device, to
nobody (the digest of no device)."""

from __future__ import annotations

import hashlib
import uuid

from tidings.protocol import Accepted, Rejected, Send, StaleDevices
from tidings.server.domain import Refused

from .test_e2ee import keyed, keys  # noqa: F401 - the fixture

NO_DEVICES = hashlib.sha256(b"").digest()


async def test_note_to_self_is_a_direct_conversation_of_one_member(world, keys):  # noqa: F811
    alice, _ = await keyed(world, keys, "alice")
    record, created = await world.engine.create_direct(alice, "alice")
    assert created and record.kind == "direct"
    assert [m.account_id for m in record.members] == [alice.account_id]
    again, created_again = await world.engine.create_direct(alice, "alice")
    assert again.id == record.id and not created_again


async def test_on_the_only_device_a_note_to_self_takes_the_digest_of_no_device(
    world,
    keys,  # noqa: F811
):
    alice, _ = await keyed(world, keys, "alice")
    record, _ = await world.engine.create_direct(alice, "alice")
    answer = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=record.id, payload=b"", devices_digest=NO_DEVICES)
    )
    assert isinstance(answer, Accepted) and answer.seq == 2
    wrong = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=record.id, payload=b"", devices_digest=b"\0" * 32)
    )
    assert isinstance(wrong, StaleDevices)
    bare = await world.engine.send(alice, Send(id=uuid.uuid4(), conv=record.id, payload=b"x"))
    assert isinstance(bare, Rejected | Accepted)  # plaintext servers store it as before


async def test_with_another_device_a_note_to_self_is_encrypted_to_it(world, keys):  # noqa: F811
    alice, identity = await keyed(world, keys, "alice")
    record, _ = await world.engine.create_direct(alice, "alice")
    second = await world.second_device(alice)
    from .test_e2ee import upload

    await keys.upload(second, upload(identity, prekeys=range(2), kyber_prekeys=range(2)))
    # the digest of no device is stale now: the other device must get a copy
    stale = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=record.id, payload=b"", devices_digest=NO_DEVICES)
    )
    assert isinstance(stale, StaleDevices)
    theirs = await world.online(second)
    sent = await world.engine.send(
        alice,
        Send(
            id=uuid.uuid4(),
            conv=record.id,
            payload=b"",
            device_payloads={f"{alice.account_id}:2": b"\x02ciphertext"},
        ),
    )
    assert isinstance(sent, Accepted)
    (envelope,) = theirs.envelopes()
    assert envelope.device_payload == b"\x02ciphertext" and envelope.sender == alice.account_id


async def test_nobody_else_can_join_a_note_to_self(world, keys):  # noqa: F811
    alice, _ = await keyed(world, keys, "alice")
    bob, _ = await keyed(world, keys, "bob")
    record, _ = await world.engine.create_direct(alice, "alice")
    try:
        await world.engine.conversation_for(bob, record.id)
    except Refused as refused:
        assert refused.code in ("not_member", "not_found")
    else:
        raise AssertionError("bob reached alice's note to self")
