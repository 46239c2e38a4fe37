"""Server side of end-to-end encryption (docs/e2ee.md) on a real store: the key
directory, device-list validation, per-device payloads, to-device messages, provisioning and
rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

import pytest

from tidings.protocol import (
    Accepted,
    DeviceAccepted,
    DeviceEnvelope,
    DeviceSend,
    Envelope,
    Error,
    ErrorCode,
    Rejected,
    Send,
    StaleDevices,
)
from tidings.protocol.keys import (
    MAX_STORED_PREKEYS,
    ApproveDevice,
    KeyUpload,
    KyberPreKey,
    OneTimePreKey,
    SignedPreKey,
)
from tidings.server.auth import Authenticator
from tidings.server.delivery import Device
from tidings.server.directory import KeyDirectory, Provisioner
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import Refused


def curve() -> bytes:
    return b"\x05" + os.urandom(32)


def kyber() -> bytes:
    return b"\x08" + os.urandom(1568)


def sig() -> bytes:
    return os.urandom(64)


def upload(
    identity: bytes,
    *,
    prekeys: range = range(0),
    kyber_prekeys: range = range(0),
    first: bool = True,
    replace: bool = False,
) -> KeyUpload:
    return KeyUpload(
        identity_key=identity,
        registration_id=42,
        signed_prekey=SignedPreKey(1, curve(), sig()) if first else None,
        kyber_last_resort=KyberPreKey(9000, kyber(), sig()) if first else None,
        prekeys=[OneTimePreKey(i, curve()) for i in prekeys],
        kyber_prekeys=[KyberPreKey(i, kyber(), sig()) for i in kyber_prekeys],
        replace_identity=replace,
    )


def address(device: Device) -> str:
    return f"{device.account_id}:{device.device_id}"


async def add_device(world, device: Device, device_id: int) -> Device:
    added = await world.add_device(device)
    assert added.device_id == device_id
    return added


@pytest.fixture
def keys(world) -> KeyDirectory:
    return KeyDirectory(world.store, claims_per_minute=100_000, clock=world.now)


async def keyed(world, keys, username: str, *, prekeys: int = 5) -> tuple[Device, bytes]:
    device = await world.account(username)
    identity = curve()
    await keys.upload(
        device, upload(identity, prekeys=range(prekeys), kyber_prekeys=range(prekeys))
    )
    return device, identity


async def direct(world, a: Device, b: Device) -> str:
    record, _ = await world.engine.create_direct(a, b.username)
    return record.id


def digest(*devices: Device) -> bytes:
    return hashlib.sha256("\n".join(sorted(address(d) for d in devices)).encode()).digest()


# --------------------------------------------------------------------------- key directory


async def test_upload_counts_and_shape_checks(world, keys):
    alice = await world.account("alice")
    identity = curve()
    counts = await keys.upload(alice, upload(identity, prekeys=range(3), kyber_prekeys=range(2)))
    assert (counts.prekeys, counts.kyber_prekeys, counts.signed_prekey_id) == (3, 2, 1)
    assert counts.signed_prekey_uploaded_at == world.clock
    assert await keys.counts(alice) == counts

    # Refills may leave out the signed and last-resort prekeys; the same key id is replaced.
    counts = await keys.upload(alice, upload(identity, prekeys=range(2, 6), first=False))
    assert (counts.prekeys, counts.kyber_prekeys) == (6, 2)

    bad = upload(identity)
    bad.prekeys = [OneTimePreKey(1, b"\x08" + os.urandom(32))]
    with pytest.raises(Refused) as refused:
        await keys.upload(alice, bad)
    assert refused.value.code == ErrorCode.BAD_FRAME
    bad = upload(b"\x07" + os.urandom(32))
    with pytest.raises(Refused):
        await keys.upload(alice, bad)
    bad = upload(identity)
    bad.kyber_last_resort = KyberPreKey(1, b"\x05" + os.urandom(1568), sig())
    with pytest.raises(Refused):
        await keys.upload(alice, bad)

    # A device's first upload must make it complete.
    bob = await world.account("bob")
    with pytest.raises(Refused) as refused:
        await keys.upload(bob, upload(curve(), first=False, prekeys=range(3)))
    assert refused.value.code == ErrorCode.BAD_FRAME
    assert (await keys.counts(bob)).prekeys == 0


async def test_identity_key_is_per_account_and_replacing_drops_other_devices(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    second = await add_device(world, alice, 2)
    await keys.upload(second, upload(identity, prekeys=range(100, 103)))
    bob, _ = await keyed(world, keys, "bob")
    conv = await direct(world, alice, bob)
    assert await world.engine.device_map(bob, conv) == {
        alice.account_id: [1, 2],
        bob.account_id: [1],
    }

    with pytest.raises(Refused) as refused:
        await keys.upload(second, upload(curve(), prekeys=range(3)))
    assert refused.value.code == ErrorCode.CONFLICT

    removed: list[tuple[str, list[int]]] = []

    async def on_removed(account_id: str, device_ids: list[int]) -> None:
        removed.append((account_id, device_ids))

    keys.on_removed = on_removed
    new_identity = curve()
    await keys.upload(second, upload(new_identity, prekeys=range(3), replace=True))
    assert removed == [(alice.account_id, [1])]
    # The old device is gone entirely: no row (so no token), no queues.
    left = world.inspector.rows("devices", "device_id", account_id=alice.account_id)
    assert left == [(2,)]
    assert (await keys.counts(alice)).prekeys == 0
    assert (await keys.counts(alice)).signed_prekey_id is None
    assert await world.engine.device_map(bob, conv) == {
        alice.account_id: [2],
        bob.account_id: [1],
    }
    (bundle,) = await keys.claim(bob, {alice.account_id: []})
    assert bundle.identity_key == new_identity
    assert [d.device_id for d in bundle.devices] == [2]


async def test_remove_device_deletes_it_and_reports_it(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    second = await add_device(world, alice, 2)
    await keys.upload(second, upload(identity, prekeys=range(100, 103)))
    bob, _ = await keyed(world, keys, "bob")
    conv = await direct(world, alice, bob)
    removed: list[tuple[str, list[int]]] = []

    async def on_removed(account_id: str, device_ids: list[int]) -> None:
        removed.append((account_id, device_ids))

    keys.on_removed = on_removed
    for asker, device_id, code in (
        (alice, 1, ErrorCode.FORBIDDEN),  # not itself
        (bob, 2, ErrorCode.NOT_FOUND),  # bob has no device 2; alice's is not his
        (alice, 9, ErrorCode.NOT_FOUND),
    ):
        with pytest.raises(Refused) as refused:
            await keys.remove_device(asker, device_id)
        assert refused.value.code == code
    assert removed == []

    await keys.remove_device(alice, 2)
    assert removed == [(alice.account_id, [2])]
    assert await world.engine.device_map(bob, conv) == {
        alice.account_id: [1],
        bob.account_id: [1],
    }
    assert (await keys.counts(second)).prekeys == 0
    with pytest.raises(Refused):
        await keys.remove_device(alice, 2)


async def test_at_most_max_stored_prekeys_are_kept_newest_first(world, keys):
    alice = await world.account("alice")
    identity = curve()
    await keys.upload(alice, upload(identity, prekeys=range(200)))
    for start in range(200, MAX_STORED_PREKEYS + 200, 200):
        counts = await keys.upload(
            alice, upload(identity, prekeys=range(start, start + 200), first=False)
        )
    assert counts.prekeys == MAX_STORED_PREKEYS
    bob = await world.account("bob")
    (bundle,) = await keys.claim(bob, {alice.account_id: []})
    assert bundle.devices[0].prekey is not None
    assert bundle.devices[0].prekey.id == 200  # the oldest 200 were dropped


async def test_concurrent_claims_never_share_a_one_time_prekey(world, keys):
    alice, identity = await keyed(world, keys, "alice", prekeys=10)
    claimers = [await world.account(f"user{i}") for i in range(25)]
    results = await asyncio.gather(*(keys.bundles(c, alice.account_id, None) for c in claimers))
    prekeys = [r.devices[0].prekey for r in results]
    kybers = [r.devices[0].kyber_prekey for r in results]
    handed = [p.id for p in prekeys if p is not None]
    assert sorted(handed) == list(range(10))
    assert sum(p is None for p in prekeys) == 15
    one_time_kyber = [
        k.id for k, r in zip(kybers, results, strict=True) if not r.devices[0].kyber_is_last_resort
    ]
    assert sorted(one_time_kyber) == list(range(10))
    last_resort = [
        k.id for k, r in zip(kybers, results, strict=True) if r.devices[0].kyber_is_last_resort
    ]
    assert last_resort == [9000] * 15
    assert all(r.identity_key == identity for r in results)
    assert (await keys.counts(alice)).prekeys == 0


async def test_claims_skip_the_requester_and_devices_without_keys(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    await add_device(world, alice, 2)  # no keys: cannot receive encrypted messages
    third = await add_device(world, alice, 3)
    await keys.upload(third, upload(identity, prekeys=range(50, 52)))
    nobody = await world.account("nobody")

    bundles = await keys.claim(alice, {alice.account_id: [], nobody.account_id: []})
    assert [(b.account_id, [d.device_id for d in b.devices]) for b in bundles] == [
        (alice.account_id, [3])
    ]
    bob = await world.account("bob")
    (bundle,) = await keys.claim(bob, {alice.account_id: [3, 2]})
    assert [d.device_id for d in bundle.devices] == [3]
    with pytest.raises(Refused) as refused:
        await keys.bundles(bob, alice.account_id, 2)
    assert refused.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(Refused):
        await keys.bundles(bob, nobody.account_id, None)


async def test_claims_are_rate_limited_per_account(world):
    ticks = [0.0]
    keys = KeyDirectory(
        world.store, claims_per_minute=6, clock=world.now, limiter_clock=lambda: ticks[0]
    )
    alice, _ = await keyed(world, keys, "alice", prekeys=20)
    bob, carol = await world.account("bob"), await world.account("carol")
    for _ in range(6):
        await keys.bundles(bob, alice.account_id, None)
    with pytest.raises(Refused) as refused:
        await keys.bundles(bob, alice.account_id, None)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    await keys.bundles(carol, alice.account_id, None)  # per requesting account
    ticks[0] += 10.0  # one token back
    await keys.bundles(bob, alice.account_id, None)
    with pytest.raises(Refused):
        await keys.bundles(bob, alice.account_id, None)


def test_rate_limiter_buckets():
    ticks = [100.0]
    limiter = RateLimiter(60, clock=lambda: ticks[0])
    assert limiter.allow("a", 60)
    assert not limiter.allow("a")
    assert limiter.allow("b")
    ticks[0] += 1.0
    assert limiter.allow("a")
    assert not limiter.allow("a")
    ticks[0] += 3600.0  # refills only up to the capacity
    assert limiter.allow("a", 60)
    assert not limiter.allow("a")
    # A cost above the capacity passes from a full bucket and leaves a debt.
    assert limiter.allow("c", 120)
    ticks[0] += 30.0
    assert not limiter.allow("c")
    limiter.charge("b", 1000)
    ticks[0] += 60.0
    assert not limiter.allow("b")
    with pytest.raises(ValueError):
        RateLimiter(0)


# --------------------------------------------------------------------------- sending


async def test_direct_send_must_cover_every_other_device(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    alice2 = await add_device(world, alice, 2)
    await keys.upload(alice2, upload(identity, prekeys=range(10, 12)))
    await add_device(world, alice, 3)  # never uploaded keys: not a recipient
    bob, _ = await keyed(world, keys, "bob")
    conv = await direct(world, alice, bob)
    msg_id = uuid.uuid4()

    stale = await world.engine.send(
        alice, Send(id=msg_id, conv=conv, payload=b"", device_payloads={address(bob): b"c-b"})
    )
    assert isinstance(stale, StaleDevices)
    assert stale.missing == [address(alice2)] and stale.extra == []
    assert stale.devices == {alice.account_id: [1, 2], bob.account_id: [1]}
    assert await world.count("envelopes") == 1  # only `created`

    ghost = f"{bob.account_id}:7"
    stale = await world.engine.send(
        alice,
        Send(
            id=msg_id,
            conv=conv,
            payload=b"",
            device_payloads={
                address(bob): b"x",
                address(alice2): b"y",
                address(alice): b"z",
                ghost: b"g",
            },
        ),
    )
    assert isinstance(stale, StaleDevices)
    assert stale.missing == [] and stale.extra == sorted([address(alice), ghost])

    accepted = await world.engine.send(
        alice,
        Send(
            id=msg_id,
            conv=conv,
            payload=b"",
            device_payloads={address(bob): b"for bob", address(alice2): b"for alice2"},
        ),
    )
    assert isinstance(accepted, Accepted) and accepted.seq == 2
    # A resend of a stored id gets the original, whatever devices it names now.
    again = await world.engine.send(
        alice, Send(id=msg_id, conv=conv, payload=b"", device_payloads={address(bob): b"x"})
    )
    assert again == accepted

    # Every device gets only its own ciphertext, in replay and in Fetch, until it acks.
    (bob_env,) = [
        e for e in await world.store.pending(bob.account_id, 1, ("", 0), 10) if e.seq == 2
    ]
    assert bob_env.device_payload == b"for bob" and bob_env.payload == b""
    (a2_env,) = [
        e for e in await world.store.pending(alice.account_id, 2, ("", 0), 10) if e.seq == 2
    ]
    assert a2_env.device_payload == b"for alice2"
    (a3_env,) = [
        e for e in await world.store.pending(alice.account_id, 3, ("", 0), 10) if e.seq == 2
    ]
    assert a3_env.device_payload == b""  # still in its queue: seqs stay gapless
    batch = await world.engine.fetch(bob, conv, 1, 10)
    assert [e.device_payload for e in batch.envelopes] == [b"for bob"]
    await world.engine.ack(bob, {conv: 2})
    batch = await world.engine.fetch(bob, conv, 1, 10)
    assert [e.device_payload for e in batch.envelopes] == [b""]
    (a2_env,) = (await world.engine.fetch(alice2, conv, 1, 10)).envelopes
    assert a2_env.device_payload == b"for alice2"


async def test_live_envelopes_carry_each_devices_own_ciphertext(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    alice2 = await add_device(world, alice, 2)
    await keys.upload(alice2, upload(identity))
    bob, bob_identity = await keyed(world, keys, "bob")
    bob2 = await add_device(world, bob, 2)
    await keys.upload(bob2, upload(bob_identity))
    conv = await direct(world, alice, bob)
    online = {d: await world.online(d) for d in (alice, alice2, bob, bob2)}
    for recorder in online.values():
        recorder.take()
    payloads = {address(d): address(d).encode() for d in (alice2, bob, bob2)}
    result = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=conv, payload=b"", device_payloads=payloads)
    )
    assert isinstance(result, Accepted)
    assert online[alice].take() == []
    for device in (alice2, bob, bob2):
        (envelope,) = online[device].envelopes()
        assert envelope.device_payload == address(device).encode()


async def test_group_send_checks_the_devices_digest(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    alice2 = await add_device(world, alice, 2)
    await keys.upload(alice2, upload(identity))
    bob, _ = await keyed(world, keys, "bob")
    carol = await world.account("carol")  # no keys yet
    group = await world.engine.create_group(alice, "g", ["bob", "carol"])
    msg_id = uuid.uuid4()

    stale = await world.engine.send(
        alice, Send(id=msg_id, conv=group.id, payload=b"\x07sk", devices_digest=digest(bob))
    )
    assert isinstance(stale, StaleDevices)
    assert stale.devices == {
        alice.account_id: [1, 2],
        bob.account_id: [1],
        carol.account_id: [],
    }
    assert stale.missing == [] and stale.extra == []
    ok = await world.engine.send(
        alice,
        Send(id=msg_id, conv=group.id, payload=b"\x07sk", devices_digest=digest(bob, alice2)),
    )
    assert isinstance(ok, Accepted)

    # Carol's device uploads keys: it counts from then on.
    await keys.upload(carol, upload(curve()))
    stale = await world.engine.send(
        alice,
        Send(id=uuid.uuid4(), conv=group.id, payload=b"\x07", devices_digest=digest(bob, alice2)),
    )
    assert isinstance(stale, StaleDevices)
    ok = await world.engine.send(
        alice,
        Send(
            id=uuid.uuid4(),
            conv=group.id,
            payload=b"\x07",
            devices_digest=digest(bob, alice2, carol),
        ),
    )
    assert isinstance(ok, Accepted)

    # Shapes that make no sense are refused, not answered StaleDevices.
    bad = await world.engine.send(
        alice,
        Send(id=uuid.uuid4(), conv=group.id, payload=b"", device_payloads={address(bob): b"x"}),
    )
    assert isinstance(bad, Rejected) and bad.code == ErrorCode.BAD_FRAME
    bad = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=group.id, payload=b"", devices_digest=b"short")
    )
    assert isinstance(bad, Rejected) and bad.code == ErrorCode.BAD_FRAME


async def test_non_members_learn_no_devices(world, keys):
    alice, _ = await keyed(world, keys, "alice")
    bob, _ = await keyed(world, keys, "bob")
    eve, _ = await keyed(world, keys, "eve")
    conv = await direct(world, alice, bob)
    result = await world.engine.send(
        eve, Send(id=uuid.uuid4(), conv=conv, payload=b"", device_payloads={address(bob): b"x"})
    )
    assert isinstance(result, Rejected) and result.code == ErrorCode.NOT_MEMBER
    with pytest.raises(Refused) as refused:
        await world.engine.device_map(eve, conv)
    assert refused.value.code == ErrorCode.NOT_MEMBER


async def test_plaintext_sends_pass_unless_e2ee_is_required(world, keys):
    alice, _ = await keyed(world, keys, "alice")
    bob, _ = await keyed(world, keys, "bob")
    conv = await direct(world, alice, bob)
    assert isinstance(await world.send(alice, conv, b"plain"), Accepted)
    world.engine.require_e2ee = True
    refused = await world.send(alice, conv, b"plain")
    assert isinstance(refused, Rejected) and refused.code == ErrorCode.BAD_FRAME
    ok = await world.engine.send(
        alice, Send(id=uuid.uuid4(), conv=conv, payload=b"", device_payloads={address(bob): b"c"})
    )
    assert isinstance(ok, Accepted)


# --------------------------------------------------------------------------- to-device


async def test_device_send_queues_once_and_acks_drop(world, keys):
    alice, identity = await keyed(world, keys, "alice")
    alice2 = await add_device(world, alice, 2)
    await keys.upload(alice2, upload(identity))
    bob, _ = await keyed(world, keys, "bob")
    stranger, _ = await keyed(world, keys, "stranger")  # shares no conversation with alice
    unkeyed = await world.account("carol")
    await world.engine.create_group(alice, "g", ["bob", "carol"])
    live = await world.online(bob)

    msg_id = uuid.uuid4()
    frame = DeviceSend(
        id=msg_id,
        messages={
            address(bob): b"to bob",
            address(alice2): b"to me",
            address(alice): b"to myself",
            address(stranger): b"no",
            address(unkeyed): b"no keys",
            f"{bob.account_id}:9": b"no such device",
        },
    )
    answer = await world.engine.device_send(alice, frame)
    assert isinstance(answer, DeviceAccepted)
    assert answer.unknown == sorted(
        [address(alice), address(stranger), address(unkeyed), f"{bob.account_id}:9"]
    )
    (delivered,) = [f for f in live.take() if isinstance(f, DeviceEnvelope)]
    assert (delivered.dseq, delivered.payload, delivered.sender) == (1, b"to bob", alice.account_id)

    # A resend after a lost DeviceAccepted queues nothing and answers the same.
    assert await world.engine.device_send(alice, frame) == answer
    assert live.take() == []
    assert await world.count("device_queue") == 2

    await world.engine.device_send(
        alice, DeviceSend(id=uuid.uuid4(), messages={address(bob): b"second"})
    )
    queue = [e async for e in world.engine.replay_devices(bob)]
    assert [(e.dseq, e.payload) for e in queue] == [(1, b"to bob"), (2, b"second")]
    await world.engine.ack(bob, {}, device_upto=1)
    queue = [e async for e in world.engine.replay_devices(bob, page=1)]
    assert [(e.dseq, e.payload) for e in queue] == [(2, b"second")]
    assert [e.payload async for e in world.engine.replay_devices(alice2)] == [b"to me"]

    too_big = DeviceSend(id=uuid.uuid4(), messages={address(bob): b"x" * (241 * 1024)})
    error = await world.engine.device_send(alice, too_big)
    assert isinstance(error, Error) and error.code == ErrorCode.PAYLOAD_TOO_LARGE

    world.clock += 31 * 86_400_000
    await world.engine.purge_expired(30)
    assert await world.count("device_queue") == 0
    assert await world.count("device_sends") == 0


# --------------------------------------------------------------------------- provisioning


async def test_provisioning_lifecycle(world, keys):
    provisioner = Provisioner(
        world.store, per_minute=100, ttl_seconds=600, max_devices=3, clock=world.now
    )
    auth = Authenticator(world.store)
    alice, _ = await keyed(world, keys, "alice")
    mallory = await world.account("mallory")
    ephemeral = curve()
    created = await provisioner.create("127.0.0.1", ephemeral)
    assert created.expires_at == world.clock + 600_000
    bearer = f"Bearer {created.secret}"

    async def code_of(coro) -> ErrorCode:
        with pytest.raises(Refused) as refused:
            await coro
        return refused.value.code

    assert await code_of(provisioner.fetch(created.id, bearer)) == ErrorCode.PENDING
    assert await code_of(provisioner.fetch(created.id, "Bearer wrong")) == ErrorCode.UNAUTHORIZED
    assert await code_of(provisioner.fetch(created.id, None)) == ErrorCode.UNAUTHORIZED
    assert await code_of(provisioner.fetch("pnope", bearer)) == ErrorCode.NOT_FOUND
    other_key = ApproveDevice(device_name="laptop", ephemeral_key=curve(), sealed=b"sealed")
    assert await code_of(provisioner.approve(alice, created.id, other_key)) == ErrorCode.CONFLICT

    body = ApproveDevice(device_name="laptop", ephemeral_key=ephemeral, sealed=b"sealed box")
    approved = await provisioner.approve(alice, created.id, body)
    assert (approved.account_id, approved.device_id) == (alice.account_id, 2)
    # The same approval again (its answer was lost) gets the same device; anything else conflicts.
    again = await provisioner.approve(alice, created.id, body)
    assert (again.account_id, again.device_id) == (alice.account_id, 2)
    resealed = ApproveDevice(device_name="laptop", ephemeral_key=ephemeral, sealed=b"other box")
    assert await code_of(provisioner.approve(alice, created.id, resealed)) == ErrorCode.CONFLICT
    assert await code_of(provisioner.approve(mallory, created.id, body)) == ErrorCode.CONFLICT

    linked = await provisioner.fetch(created.id, bearer)
    assert (linked.account_id, linked.username, linked.device_id) == (alice.account_id, "alice", 2)
    assert linked.sealed == b"sealed box"
    device = await auth.device(f"Bearer {linked.token}")
    assert device is not None and device.address == (alice.account_id, 2)
    assert device.device_name == "laptop"
    assert await code_of(provisioner.fetch(created.id, bearer)) == ErrorCode.NOT_FOUND

    # The new device counts for encryption once it has uploaded keys.
    bob, _ = await keyed(world, keys, "bob")
    conv = await direct(world, alice, bob)
    assert (await world.engine.device_map(bob, conv))[alice.account_id] == [1]
    identity = (await keys.claim(bob, {alice.account_id: []}))[0].identity_key
    await keys.upload(device, upload(identity))
    assert (await world.engine.device_map(bob, conv))[alice.account_id] == [1, 2]

    # Device cap.
    third = await provisioner.create("127.0.0.1", ephemeral)
    await provisioner.approve(alice, third.id, body)
    fourth = await provisioner.create("127.0.0.1", ephemeral)
    assert await code_of(provisioner.approve(alice, fourth.id, body)) == ErrorCode.FORBIDDEN


async def test_provisioning_expires_and_unfetched_devices_go(world):
    provisioner = Provisioner(
        world.store, per_minute=2, ttl_seconds=600, max_devices=5, clock=world.now
    )
    alice = await world.account("alice")
    ephemeral = curve()
    first = await provisioner.create("10.0.0.1", ephemeral)
    second = await provisioner.create("10.0.0.1", ephemeral)
    with pytest.raises(Refused) as refused:
        await provisioner.create("10.0.0.1", ephemeral)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    await provisioner.create("10.0.0.2", ephemeral)  # per address
    with pytest.raises(Refused) as refused:
        await provisioner.create("10.0.0.3", b"\x06" + os.urandom(32))
    assert refused.value.code == ErrorCode.BAD_FRAME

    body = ApproveDevice(device_name="phone", ephemeral_key=ephemeral, sealed=b"s")
    await provisioner.approve(alice, second.id, body)
    assert await world.count("devices") == 2
    world.clock += 600_000
    for coro in (
        provisioner.fetch(first.id, f"Bearer {first.secret}"),
        provisioner.approve(alice, first.id, body),
        provisioner.fetch(second.id, f"Bearer {second.secret}"),
    ):
        with pytest.raises(Refused) as refused:
            await coro
        assert refused.value.code == ErrorCode.EXPIRED
    assert await world.engine.purge_expired(30) == 3
    assert await world.count("provisioning") == 0
    assert await world.count("devices") == 1  # the device never fetched is gone


async def test_replayed_envelope_type_is_unchanged_for_plaintext(world):
    alice, bob = await world.account("alice"), await world.account("bob")
    conv = await direct(world, alice, bob)
    await world.send(alice, conv, b"hello")
    envelopes = await world.store.pending(bob.account_id, 1, ("", 0), 10)
    assert all(isinstance(e, Envelope) and e.device_payload == b"" for e in envelopes)
    assert envelopes[-1].payload == b"hello"
