"""The encryption layer between in-process devices (no server): direct messages to every
device, stale device lists, Sender Keys with rotation, undecryptable input with session reset,
identity changes and safety numbers."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from tidings.client.core.sealing import (
    TYPE_PREKEY,
    TYPE_WHISPER,
    Failed,
    IdentityBlocked,
    NoDevices,
    NotDistributed,
    Opened,
    Waiting,
    devices_digest,
    parse_address,
)
from tidings.crypto import IdentityKeyPair, ProtocolAddress
from tidings.protocol import Envelope, StaleDevices, SystemEvent, encode

from .parties import Device, Directory, device_envelopes, envelope_for, group_envelope

CONV = "direct-1"


@pytest.fixture
def directory() -> Directory:
    d = Directory()
    d.conversations[CONV] = {"alice", "bob"}
    return d


def _open(device: Device, sender: Device, payloads: dict[str, bytes]) -> bytes:
    result = device.e2ee.open_envelope(
        envelope_for(sender, CONV, device.address, payloads, uuid.uuid4())
    )
    assert isinstance(result, Opened), result
    return result.plaintext


async def test_direct_messages_reach_every_device_of_both_sides(directory: Directory) -> None:
    identity = IdentityKeyPair.generate()
    alice1 = Device(directory, "alice", 1, identity)
    alice2 = Device(directory, "alice", 2, identity)
    bob_identity = IdentityKeyPair.generate()
    bob1 = Device(directory, "bob", 1, bob_identity)
    bob2 = Device(directory, "bob", 2, bob_identity)

    payloads = await alice1.e2ee.encrypt_direct(CONV, b"hello", {"alice", "bob"})
    assert sorted(payloads) == ["alice:2", "bob:1", "bob:2"]
    assert {p[0] for p in payloads.values()} == {TYPE_PREKEY}
    for device in (alice2, bob1, bob2):
        assert _open(device, alice1, payloads) == b"hello"

    reply = await bob2.e2ee.encrypt_direct(CONV, b"hi back", {"alice", "bob"})
    assert sorted(reply) == ["alice:1", "alice:2", "bob:1"]
    for device in (alice1, alice2, bob1):
        assert _open(device, bob2, reply) == b"hi back"

    # answered: alice1 → bob2 is a Whisper message now; no more claims needed
    claims = directory.claims
    again = await alice1.e2ee.encrypt_direct(CONV, b"third", {"alice", "bob"})
    assert again["bob:2"][0] == TYPE_WHISPER
    assert directory.claims == claims
    assert _open(bob2, alice1, again) == b"third"


async def test_stale_devices_are_fixed_and_resent(directory: Directory) -> None:
    alice = Device(directory, "alice", 1)
    bob_identity = IdentityKeyPair.generate()
    bob1 = Device(directory, "bob", 1, bob_identity)
    payloads = await alice.e2ee.encrypt_direct(CONV, b"one", {"alice", "bob"})
    assert sorted(payloads) == ["bob:1"]
    _open(bob1, alice, payloads)

    # bob links a second device, and the first one is later unlinked
    bob2 = Device(directory, "bob", 2, bob_identity)
    stale = StaleDevices(
        id=uuid.uuid4(), conv=CONV, missing=["bob:2"], devices=directory.device_map(CONV)
    )
    alice.e2ee.apply_stale(stale)
    payloads = await alice.e2ee.encrypt_direct(CONV, b"two", {"alice", "bob"})
    assert sorted(payloads) == ["bob:1", "bob:2"]
    assert _open(bob2, alice, payloads) == b"two"
    assert _open(bob1, alice, payloads) == b"two"

    directory.remove_device("bob", 1)
    stale = StaleDevices(
        id=uuid.uuid4(), conv=CONV, extra=["bob:1"], devices=directory.device_map(CONV)
    )
    alice.e2ee.apply_stale(stale)
    assert alice.keys.load_session(ProtocolAddress("bob", 1)) is None
    payloads = await alice.e2ee.encrypt_direct(CONV, b"three", {"alice", "bob"})
    assert sorted(payloads) == ["bob:2"]


async def test_a_device_that_vanished_is_found_out_without_a_stale_answer(
    directory: Directory,
) -> None:
    alice = Device(directory, "alice", 1)
    Device(directory, "bob", 1)
    await alice.e2ee.encrypt_direct(CONV, b"x", {"alice", "bob"})
    alice.keys.set_devices("bob", [1, 7])  # a device the directory has no keys for
    payloads = await alice.e2ee.encrypt_direct(CONV, b"y", {"alice", "bob"})
    assert sorted(payloads) == ["bob:1"]


GROUP = "group-1"


async def _distribute(sender: Device, receivers: list[Device], members: set[str]) -> None:
    distribution = await sender.e2ee.group_distribution(GROUP, members)
    envelopes = device_envelopes(sender, distribution.messages)
    for device in receivers:
        env = envelopes.get(device.address)
        if env is not None:
            assert not device.e2ee.open_device_envelope(env).undecryptable
    sender.e2ee.distributed(distribution)


async def test_group_sender_keys_and_rotation(directory: Directory) -> None:
    members = {"alice", "bob", "carol"}
    directory.conversations[GROUP] = set(members)
    alice, bob, carol = (Device(directory, n, 1) for n in sorted(members))
    await _distribute(alice, [bob, carol], members)
    assert (await alice.e2ee.group_distribution(GROUP, members)).messages == {}  # all have it

    payload, digest = await alice.e2ee.encrypt_group(GROUP, b"to all", members)
    assert digest == devices_digest([ProtocolAddress("bob", 1), ProtocolAddress("carol", 1)])
    for device in (bob, carol):
        got = device.e2ee.open_envelope(group_envelope(alice, GROUP, payload))
        assert got == Opened(b"to all")

    # carol is removed: alice rotates, carol gets no new key and cannot read what follows
    removed = SystemEvent(action="member_removed", actor="alice", members=["carol"])
    directory.conversations[GROUP].discard("carol")
    system = Envelope(
        conv=GROUP,
        seq=2,
        id=uuid.uuid4(),
        sender="alice",
        sender_device=1,
        ts=0,
        payload=encode(removed),
        kind="system",
    )
    for device in (alice, bob):
        assert device.e2ee.open_envelope(system) is None
    distribution = await alice.e2ee.group_distribution(GROUP)
    assert sorted(distribution.messages) == ["bob:1"]
    envelopes = device_envelopes(alice, distribution.messages)
    bob.e2ee.open_device_envelope(envelopes["bob:1"])
    alice.e2ee.distributed(distribution)
    secret, _ = await alice.e2ee.encrypt_group(GROUP, b"after carol left")
    assert bob.e2ee.open_envelope(group_envelope(alice, GROUP, secret, 3)) == Opened(
        b"after carol left"
    )
    assert carol.e2ee.open_envelope(group_envelope(alice, GROUP, secret, 3)) == Waiting()
    assert carol.keys.pending_from("alice", 1)  # kept, but no key will ever come


async def test_a_rotation_while_distributing_means_distributing_again(
    directory: Directory,
) -> None:
    directory.conversations[GROUP] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    distribution = await alice.e2ee.group_distribution(GROUP, {"alice", "bob"})
    alice.e2ee.rotate(GROUP)  # a member left while the DeviceSend was on its way
    alice.e2ee.distributed(distribution)
    with pytest.raises(NotDistributed):
        await alice.e2ee.encrypt_group(GROUP, b"x")
    await _distribute(alice, [bob], {"alice", "bob"})
    payload, _ = await alice.e2ee.encrypt_group(GROUP, b"y")
    assert bob.e2ee.open_envelope(group_envelope(alice, GROUP, payload)) == Opened(b"y")


async def test_a_new_member_cannot_read_earlier_posts(directory: Directory) -> None:
    directory.conversations[GROUP] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    await _distribute(alice, [bob], {"alice", "bob"})
    early, _ = await alice.e2ee.encrypt_group(GROUP, b"before dave", {"alice", "bob"})

    dave = Device(directory, "dave", 1)
    directory.conversations[GROUP].add("dave")
    await _distribute(alice, [bob, dave], {"alice", "bob", "dave"})
    late, _ = await alice.e2ee.encrypt_group(GROUP, b"with dave")
    assert dave.e2ee.open_envelope(group_envelope(alice, GROUP, late, 2)) == Opened(b"with dave")
    assert isinstance(dave.e2ee.open_envelope(group_envelope(alice, GROUP, early, 1)), Failed)


async def test_group_message_before_its_key_waits_and_is_released(directory: Directory) -> None:
    directory.conversations[GROUP] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    distribution = await alice.e2ee.group_distribution(GROUP, {"alice", "bob"})
    alice.e2ee.distributed(distribution)
    payload, _ = await alice.e2ee.encrypt_group(GROUP, b"early bird")
    env = group_envelope(alice, GROUP, payload)
    assert bob.e2ee.open_envelope(env) == Waiting()
    result = bob.e2ee.open_device_envelope(device_envelopes(alice, distribution.messages)["bob:1"])
    assert [(e.id, p) for e, p in result.released] == [(env.id, b"early bird")]
    assert bob.keys.pending_from("alice", 1) == []


async def test_undecryptable_then_reset_then_messages_flow(directory: Directory) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    first = await alice.e2ee.encrypt_direct(CONV, b"one", {"alice", "bob"})
    _open(bob, alice, first)
    answer = await bob.e2ee.encrypt_direct(CONV, b"ok", {"alice", "bob"})
    _open(alice, bob, answer)

    session_before = bob.keys.db.execute("SELECT record FROM e2ee_sessions").fetchall()
    good = await alice.e2ee.encrypt_direct(CONV, b"two", {"alice", "bob"})
    corrupt = dict(good)
    data = bytearray(corrupt["bob:1"])
    data[len(data) // 2] ^= 0x40
    corrupt["bob:1"] = bytes(data)
    bad = bob.e2ee.open_envelope(envelope_for(alice, CONV, "bob:1", corrupt, uuid.uuid4()))
    assert isinstance(bad, Failed)
    assert bob.keys.db.execute("SELECT record FROM e2ee_sessions").fetchall() == session_before
    garbage = bob.e2ee.open_envelope(
        envelope_for(alice, CONV, "bob:1", {"bob:1": b"\x02garbage"}, uuid.uuid4())
    )
    assert isinstance(garbage, Failed)
    assert bob.keys.db.execute("SELECT record FROM e2ee_sessions").fetchall() == session_before

    # one reset request (rate-limited), as a new session alice can always decrypt
    assert bob.e2ee.take_resets() == [ProtocolAddress("alice", 1)]
    assert bob.e2ee.take_resets() == []
    reset = await bob.e2ee.reset_message(ProtocolAddress("alice", 1))
    assert reset["alice:1"][0] == TYPE_PREKEY
    result = alice.e2ee.open_device_envelope(device_envelopes(bob, reset)["alice:1"])
    assert not result.undecryptable
    after = await alice.e2ee.encrypt_direct(CONV, b"three", {"alice", "bob"})
    assert after["bob:1"][0] == TYPE_PREKEY  # alice archived her session: a new one
    assert _open(bob, alice, after) == b"three"
    # the original good message still decrypts (an archived state keeps its keys)
    assert _open(bob, alice, good) == b"two"


async def test_replays_and_forgeries_never_corrupt_a_session(directory: Directory) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    sent = [
        await alice.e2ee.encrypt_direct(CONV, f"m{i}".encode(), {"alice", "bob"}) for i in range(3)
    ]
    assert _open(bob, alice, sent[0]) == b"m0"
    replay = bob.e2ee.open_envelope(envelope_for(alice, CONV, "bob:1", sent[0], uuid.uuid4()))
    assert replay == Failed("duplicate")
    assert bob.e2ee.take_resets() == []  # a replay is no reason to reset
    # a forgery: a valid message re-addressed as if from another device of alice
    mallory = Device(directory, "mallory", 1)
    forged = bob.e2ee.open_envelope(envelope_for(mallory, CONV, "bob:1", sent[1], uuid.uuid4()))
    assert isinstance(forged, Failed)
    assert _open(bob, alice, sent[2]) == b"m2"
    assert _open(bob, alice, sent[1]) == b"m1"


async def test_identity_change_unverified_keeps_flowing(directory: Directory) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    _open(bob, alice, await alice.e2ee.encrypt_direct(CONV, b"x", {"alice", "bob"}))
    assert alice.keys.take_changes() == []
    # bob reinstalls: new identity, same device
    directory.identity.pop("bob")
    del directory.published[("bob", 1)]
    bob = Device(directory, "bob", 1)
    alice.keys.delete_session(ProtocolAddress("bob", 1))
    payloads = await alice.e2ee.encrypt_direct(CONV, b"y", {"alice", "bob"})
    [change] = alice.keys.take_changes()
    assert change.account_id == "bob" and not change.was_verified
    assert _open(bob, alice, payloads) == b"y"


async def test_identity_change_of_a_verified_contact_stops_sending(directory: Directory) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    _open(bob, alice, await alice.e2ee.encrypt_direct(CONV, b"x", {"alice", "bob"}))
    reply = await bob.e2ee.encrypt_direct(CONV, b"r", {"alice", "bob"})
    _open(alice, bob, reply)
    assert alice.e2ee.safety_number("bob") == bob.e2ee.safety_number("alice")
    assert len(alice.e2ee.safety_number("bob")) == 60
    alice.keys.set_verified("bob", True)

    directory.identity.pop("bob")
    del directory.published[("bob", 1)]
    bob = Device(directory, "bob", 1)
    # the new bob writes first: alice learns the new key from the PreKey message
    reply = await bob.e2ee.encrypt_direct(CONV, b"new phone", {"alice", "bob"})
    assert _open(alice, bob, reply) == b"new phone"
    [change] = alice.keys.take_changes()
    assert change.was_verified
    known = alice.keys.known_identity("bob")
    assert known is not None and known.blocked and not known.verified
    with pytest.raises(IdentityBlocked):
        await alice.e2ee.encrypt_direct(CONV, b"stop", {"alice", "bob"})
    assert alice.e2ee.safety_number("bob") == bob.e2ee.safety_number("alice")
    alice.keys.set_verified("bob", True)
    payloads = await alice.e2ee.encrypt_direct(CONV, b"go", {"alice", "bob"})
    assert _open(bob, alice, payloads) == b"go"


def test_addresses_parse() -> None:
    assert parse_address("a:b:3") == ProtocolAddress("a:b", 3)


async def test_group_replays_and_forgeries_change_nothing(directory: Directory) -> None:
    directory.conversations[GROUP] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    await _distribute(alice, [bob], {"alice", "bob"})
    first, _ = await alice.e2ee.encrypt_group(GROUP, b"one")
    second, _ = await alice.e2ee.encrypt_group(GROUP, b"two")
    assert bob.e2ee.open_envelope(group_envelope(alice, GROUP, first)) == Opened(b"one")
    before = bob.keys.db.execute("SELECT record FROM e2ee_sender_keys").fetchall()
    replay = bob.e2ee.open_envelope(group_envelope(alice, GROUP, first, 2))
    assert replay == Failed("duplicate")
    forged = bytearray(second)
    forged[-70] ^= 0x01  # inside the ciphertext, under the signature
    assert isinstance(bob.e2ee.open_envelope(group_envelope(alice, GROUP, bytes(forged))), Failed)
    assert bob.e2ee.open_envelope(group_envelope(alice, GROUP, b"\x07junk")) == Failed(
        "bad_group_message"
    )
    assert bob.keys.db.execute("SELECT record FROM e2ee_sender_keys").fetchall() == before
    assert bob.e2ee.take_resets() == []
    assert bob.e2ee.open_envelope(group_envelope(alice, GROUP, second, 3)) == Opened(b"two")


async def test_a_changed_key_in_a_bundle_of_a_verified_contact_is_recorded_and_blocks(
    directory: Directory,
) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    _open(bob, alice, await alice.e2ee.encrypt_direct(CONV, b"x", {"alice", "bob"}))
    alice.keys.set_verified("bob", True)
    directory.identity.pop("bob")
    del directory.published[("bob", 1)]
    bob = Device(directory, "bob", 1)
    # alice learns the new key from a claimed bundle (no session any more)
    alice.keys.delete_session(ProtocolAddress("bob", 1))
    with pytest.raises(IdentityBlocked):
        await alice.e2ee.encrypt_direct(CONV, b"stop", {"alice", "bob"})
    # the change is committed, not rolled back: the new key, blocked, in the history
    [change] = alice.keys.take_changes()
    assert change.account_id == "bob" and change.was_verified
    assert [c.was_verified for c in alice.keys.identity_changes("bob")] == [True]
    known = alice.keys.known_identity("bob")
    assert known is not None and known.blocked and not known.verified
    assert known.identity_key == bob.keys.get_identity_key_pair().identity_key
    with pytest.raises(IdentityBlocked):
        await alice.e2ee.encrypt_direct(CONV, b"still stopped", {"alice", "bob"})
    await bob.e2ee.learn_identity("alice")
    assert alice.e2ee.safety_number("bob") == bob.e2ee.safety_number("alice")
    alice.keys.set_verified("bob", True)
    payloads = await alice.e2ee.encrypt_direct(CONV, b"go", {"alice", "bob"})
    assert _open(bob, alice, payloads) == b"go"


async def test_a_bundle_whose_signatures_fail_teaches_no_identity(directory: Directory) -> None:
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    _open(bob, alice, await alice.e2ee.encrypt_direct(CONV, b"x", {"alice", "bob"}))
    alice.keys.set_verified("bob", True)
    before = alice.keys.known_identity("bob")
    # the server swaps in its own identity key for bob, keeping bob's signed prekeys
    fake = IdentityKeyPair.generate().identity_key.serialize()
    directory.identity["bob"] = fake
    alice.keys.delete_session(ProtocolAddress("bob", 1))
    with pytest.raises(NoDevices):
        await alice.e2ee.encrypt_direct(CONV, b"y", {"alice", "bob"})
    assert alice.keys.known_identity("bob") == before
    assert alice.keys.take_changes() == []
    assert alice.keys.identity_changes("bob") == []
    # nor for an account seen for the first time
    carol = Device(directory, "carol", 1)
    directory.identity["carol"] = fake
    await alice.e2ee.learn_identity("carol")
    assert alice.keys.known_identity("carol") is None
    assert alice.keys.take_changes() == []
    assert carol.keys.has_identity()


async def test_a_waiting_group_message_cannot_be_displaced_by_one_with_the_same_id(
    directory: Directory,
) -> None:
    directory.conversations[GROUP] = {"alice", "bob", "carol"}
    directory.conversations["group-2"] = {"bob", "carol"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    carol = Device(directory, "carol", 1)
    distribution = await alice.e2ee.group_distribution(GROUP, {"alice", "bob"})
    alice.e2ee.distributed(distribution)
    payload, _ = await alice.e2ee.encrypt_group(GROUP, b"the real one")
    env = group_envelope(alice, GROUP, payload)
    # first an envelope with the same id from someone else, in another conversation
    other_dist = await carol.e2ee.group_distribution("group-2", {"bob", "carol"})
    carol.e2ee.distributed(other_dist)
    other, _ = await carol.e2ee.encrypt_group("group-2", b"same id")
    decoy = msgspec.structs.replace(group_envelope(carol, "group-2", other), id=env.id)
    assert bob.e2ee.open_envelope(decoy) == Waiting()
    assert bob.e2ee.open_envelope(env) == Waiting()
    result = bob.e2ee.open_device_envelope(device_envelopes(alice, distribution.messages)["bob:1"])
    assert [(e.conv, e.id, p) for e, p in result.released] == [(GROUP, env.id, b"the real one")]
    assert bob.keys.pending_from("alice", 1) == []
    result = bob.e2ee.open_device_envelope(device_envelopes(carol, other_dist.messages)["bob:1"])
    assert [(e.conv, p) for e, p in result.released] == [("group-2", b"same id")]
