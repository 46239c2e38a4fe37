"""The outgoing pipeline: a plaintext Send becomes an encrypted one; groups distribute their
sender key first and wait for DeviceAccepted."""

from __future__ import annotations

import uuid

import pytest

from tidings.client.e2ee import IdentityBlocked, Opened
from tidings.client.sealer import Sealer
from tidings.crypto import IdentityKey, IdentityKeyPair
from tidings.protocol import ClientFrame, DeviceAccepted, DeviceSend, Envelope, Send

from .parties import Device, Directory, device_envelopes


def _sealer(device: Device, kind: str, members: set[str], sent: list[ClientFrame]) -> Sealer:
    async def lookup(conv: str) -> tuple[str, frozenset[str]]:
        return kind, frozenset(members)

    async def transmit(frame: ClientFrame) -> bool:
        sent.append(frame)
        if isinstance(frame, DeviceSend):
            sealer.device_accepted(DeviceAccepted(id=frame.id))
        return True

    sealer = Sealer(device.e2ee, lookup, transmit)
    return sealer


async def test_direct_send_is_sealed_per_device() -> None:
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    sent: list[ClientFrame] = []
    sealer = _sealer(alice, "direct", {"alice", "bob"}, sent)
    frame = Send(id=uuid.uuid4(), conv="d", payload=b"content")
    sealed = await sealer.seal(frame)
    assert sealed.id == frame.id and sealed.payload == b""
    assert list(sealed.device_payloads) == ["bob:1"]
    env = Envelope(
        conv="d",
        seq=1,
        id=frame.id,
        sender="alice",
        sender_device=1,
        ts=0,
        payload=b"",
        device_payload=sealed.device_payloads["bob:1"],
    )
    assert bob.e2ee.open_envelope(env) == Opened(b"content")
    assert sent == []


async def test_group_send_distributes_first() -> None:
    directory = Directory()
    members = {"alice", "bob", "carol"}
    directory.conversations["g"] = set(members)
    alice = Device(directory, "alice", 1)
    others = [Device(directory, "bob", 1), Device(directory, "carol", 1)]
    sent: list[ClientFrame] = []
    sealer = _sealer(alice, "group", members, sent)
    sealed = await sealer.seal(Send(id=uuid.uuid4(), conv="g", payload=b"hello group"))
    [distribution] = sent
    assert isinstance(distribution, DeviceSend)
    assert sorted(distribution.messages) == ["bob:1", "carol:1"]
    assert sealed.payload[0] == 7 and len(sealed.devices_digest) == 32
    envelopes = device_envelopes(alice, distribution.messages)
    for device in others:
        device.e2ee.open_device_envelope(envelopes[device.address])
        env = Envelope(
            conv="g",
            seq=1,
            id=sealed.id,
            sender="alice",
            sender_device=1,
            ts=0,
            payload=sealed.payload,
        )
        assert device.e2ee.open_envelope(env) == Opened(b"hello group")
    await sealer.seal(Send(id=uuid.uuid4(), conv="g", payload=b"again"))
    assert len(sent) == 1  # no second distribution


async def test_blocked_identity_refuses_to_seal() -> None:
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    alice = Device(directory, "alice", 1)
    Device(directory, "bob", 1)
    alice.keys.observe_identity("bob", IdentityKey.deserialize(directory.identity["bob"]))
    alice.keys.set_verified("bob", True)
    alice.keys.observe_identity("bob", IdentityKeyPair.generate().identity_key)
    sealer = _sealer(alice, "direct", {"alice", "bob"}, [])
    with pytest.raises(IdentityBlocked):
        await sealer.seal(Send(id=uuid.uuid4(), conv="d", payload=b"x"))
