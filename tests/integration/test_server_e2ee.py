"""End-to-end encryption support of the real server process (docs/e2ee.md): the key directory
under concurrent claims, device-list validation, per-device payloads, to-device messages,
device linking and the require_e2ee switch."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import msgspec
import pytest
import websockets
from store_inspection import inspector, store_env  # noqa: F401 - store_env: both legs

from tidings.protocol import (
    Accepted,
    Ack,
    Batch,
    DeviceAccepted,
    DeviceEnvelope,
    DeviceSend,
    Envelope,
    Fetch,
    Hello,
    Rejected,
    Send,
    StaleDevices,
    Synced,
    Welcome,
)
from tidings.protocol.keys import (
    ApprovedDevice,
    DeviceMap,
    KeyCounts,
    KeyUpload,
    KyberPreKey,
    OneTimePreKey,
    PreKeyBundles,
    ProvisionedDevice,
    Provisioning,
    SignedPreKey,
)

#: These tests speak the raw protocol with content in clear, which a server refuses by default
#: since issue 4 (``require_e2ee``): their servers accept it unless told otherwise.
SERVER_ENV = {"TIDINGS_REQUIRE_E2EE": "false"}


#: REST bodies are JSON and say so (a server refuses any other Content-Type with 415).
JSON = {"Content-Type": "application/json"}


def curve() -> bytes:
    return b"\x05" + os.urandom(32)


def key_upload(identity: bytes, prekeys: int = 5, start: int = 0) -> bytes:
    body = KeyUpload(
        identity_key=identity,
        registration_id=7,
        signed_prekey=SignedPreKey(1, curve(), os.urandom(64)),
        kyber_last_resort=KyberPreKey(99_999, b"\x08" + os.urandom(1568), os.urandom(64)),
        prekeys=[OneTimePreKey(start + i, curve()) for i in range(prekeys)],
        kyber_prekeys=[
            KyberPreKey(start + i, b"\x08" + os.urandom(1568), os.urandom(64))
            for i in range(prekeys)
        ],
    )
    return msgspec.json.encode(body)


async def upload_keys(kit, account: Any, identity: bytes, prekeys: int = 5) -> KeyCounts:
    r = await kit.http.put(
        "/v1/keys", content=key_upload(identity, prekeys), headers={**account.headers, **JSON}
    )
    assert r.status_code == 200, r.text
    return msgspec.json.decode(r.content, type=KeyCounts)


async def keyed_pair(kit) -> tuple[Any, Any, bytes]:
    """Accounts alice and bob, both with keys uploaded; and alice's identity key."""
    alice, bob = await kit.account("alice"), await kit.account("bob")
    identity = curve()
    await upload_keys(kit, alice, identity)
    await upload_keys(kit, bob, curve())
    return alice, bob, identity


def addr(account: Any) -> str:
    return f"{account.account_id}:{account.device_id}"


async def link_device(kit, account: Any, name: str = "laptop") -> Any:
    """The whole provisioning flow over HTTP; returns the new device."""
    ephemeral = curve()
    r = await kit.http.post(
        "/v1/provisioning", content=msgspec.json.encode({"ephemeral_key": ephemeral}), headers=JSON
    )
    assert r.status_code == 201, r.text
    created = msgspec.json.decode(r.content, type=Provisioning)
    secret = {"Authorization": f"Bearer {created.secret}"}
    r = await kit.http.get(f"/v1/provisioning/{created.id}", headers=secret)
    assert r.status_code == 202 and r.json()["code"] == "pending"
    approve = {"device_name": name, "ephemeral_key": ephemeral, "sealed": b"opaque seal"}
    r = await kit.http.post(
        f"/v1/provisioning/{created.id}/approve",
        content=msgspec.json.encode(approve),
        headers={**account.headers, **JSON},
    )
    assert r.status_code == 200, r.text
    approved = msgspec.json.decode(r.content, type=ApprovedDevice)
    r = await kit.http.get(f"/v1/provisioning/{created.id}", headers=secret)
    assert r.status_code == 200, r.text
    linked = msgspec.json.decode(r.content, type=ProvisionedDevice)
    assert (linked.account_id, linked.device_id) == (account.account_id, approved.device_id)
    assert linked.sealed == b"opaque seal" and linked.username == account.username
    r = await kit.http.get(f"/v1/provisioning/{created.id}", headers=secret)
    assert r.status_code == 404
    return type(account)(account.account_id, account.username, linked.device_id, linked.token)


async def test_fifty_concurrent_bundle_claims_hand_out_distinct_prekeys(server, server_kit):
    kit = server_kit(server)
    alice = await kit.account("alice")
    identity = curve()
    counts = await upload_keys(kit, alice, identity, prekeys=100)
    assert (counts.prekeys, counts.kyber_prekeys) == (100, 100)
    claimers = [await kit.account(f"claimer{i}") for i in range(50)]

    async def claim(account: Any) -> tuple[float, PreKeyBundles]:
        start = time.perf_counter()
        r = await kit.http.get(f"/v1/keys/{alice.account_id}", headers=account.headers)
        elapsed = time.perf_counter() - start
        assert r.status_code == 200, r.text
        return elapsed, msgspec.json.decode(r.content, type=PreKeyBundles)

    results = await asyncio.gather(*(claim(c) for c in claimers))
    bundles = [b for _, b in results]
    prekeys = [b.devices[0].prekey for b in bundles]
    assert all(p is not None for p in prekeys)
    assert len({p.id for p in prekeys if p is not None}) == 50
    assert len({b.devices[0].kyber_prekey.id for b in bundles}) == 50
    assert not any(b.devices[0].kyber_is_last_resort for b in bundles)
    assert all(b.identity_key == identity for b in bundles)
    latencies = sorted(t for t, _ in results)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"\nbundle-claim latency under 50 concurrent claims: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms"
    )

    r = await kit.http.get("/v1/keys/counts", headers=alice.headers)
    assert msgspec.json.decode(r.content, type=KeyCounts).prekeys == 50

    # A batch claim for a group hands out the rest, then falls back to the last resort.
    r = await kit.http.post(
        "/v1/keys/claim",
        content=msgspec.json.encode({"devices": {alice.account_id: []}}),
        headers={**claimers[0].headers, **JSON},
    )
    assert r.status_code == 200, r.text
    (batch,) = msgspec.json.decode(r.content, type=list[PreKeyBundles])
    assert batch.devices[0].prekey is not None
    assert batch.devices[0].prekey.id not in {p.id for p in prekeys if p is not None}


async def test_stale_devices_then_per_device_payloads(server, server_kit):
    kit = server_kit(server)
    alice, bob, alice_identity = await keyed_pair(kit)
    conv = (await kit.direct(alice, bob))["id"]
    laptop = await link_device(kit, alice)
    await upload_keys(kit, laptop, alice_identity)

    r = await kit.http.get(f"/v1/conversations/{conv}/devices", headers=bob.headers)
    assert msgspec.json.decode(r.content, type=DeviceMap).devices == {
        alice.account_id: [1, 2],
        bob.account_id: [1],
    }
    outsider = await kit.account("outsider")
    r = await kit.http.get(f"/v1/conversations/{conv}/devices", headers=outsider.headers)
    assert r.status_code == 403 and r.json()["code"] == "not_member"

    a, b, lap = await kit.connect(alice), await kit.connect(bob), await kit.connect(laptop)
    for peer in (a, b, lap):
        await peer.hello()
    msg_id = uuid.uuid4()
    await a.send(Send(id=msg_id, conv=conv, payload=b"", device_payloads={addr(bob): b"cb"}))
    stale = await a.expect(StaleDevices)
    assert stale.id == msg_id and stale.missing == [addr(laptop)] and stale.extra == []
    assert stale.devices == {alice.account_id: [1, 2], bob.account_id: [1]}
    assert inspector(server).count("envelopes") == 1

    payloads = {addr(bob): b"ciphertext for bob", addr(laptop): b"ciphertext for laptop"}
    await a.send(Send(id=msg_id, conv=conv, payload=b"", device_payloads=payloads))
    accepted = await a.expect(Accepted)
    assert accepted.seq == 2
    for peer, account in ((b, bob), (lap, laptop)):
        envelope, _ = await peer.until(Envelope)
        assert envelope.seq == 2 and envelope.device_payload == payloads[addr(account)]

    # Replay carries the device's own ciphertext; after its ack the server has dropped it.
    await b.close()
    b = await kit.connect(bob)
    _, replay, _ = await b.hello()
    assert [e.device_payload for e in replay if e.seq == 2] == [payloads[addr(bob)]]
    await b.send(Ack(upto={conv: 2}))
    await b.ping()
    await asyncio.sleep(0.2)
    await b.send(Fetch(conv=conv, after=1))
    batch, _ = await b.until(Batch)
    assert [(e.seq, e.device_payload) for e in batch.envelopes] == [(2, b"")]
    await lap.send(Fetch(conv=conv, after=1))
    batch, _ = await lap.until(Batch)
    assert [e.device_payload for e in batch.envelopes] == [payloads[addr(laptop)]]
    stored = inspector(server).rows("pending", "account_id, device_id, payload", seq=2)
    assert (bob.account_id, 1, payloads[addr(bob)]) not in stored
    assert (alice.account_id, 2, payloads[addr(laptop)]) in stored


async def test_device_messages_come_before_batches_and_go_after_ack(server, server_kit):
    kit = server_kit(server)
    alice, bob, _ = await keyed_pair(kit)
    group = (await kit.group(alice, "team", [bob]))["id"]
    a = await kit.connect(alice)
    await a.hello()

    dist_id = uuid.uuid4()
    dsend = DeviceSend(id=dist_id, messages={addr(bob): b"sender key distribution"})
    await a.send(dsend)
    accepted, _ = await a.until(DeviceAccepted)
    assert accepted.id == dist_id and accepted.unknown == []
    await a.send(dsend)  # resent after a lost DeviceAccepted: queued once
    assert (await a.until(DeviceAccepted))[0] == accepted
    await a.send(Send(id=uuid.uuid4(), conv=group, payload=b"\x07group message"))
    await a.until(Accepted)

    b = await kit.connect(bob)
    await b.send(Hello())
    await b.expect(Welcome)
    first = await b.recv()
    assert isinstance(first, DeviceEnvelope)
    assert (first.dseq, first.id, first.payload) == (1, dist_id, b"sender key distribution")
    assert first.sender == alice.account_id and first.sender_device == 1
    frames = []
    while not isinstance(frame := await b.recv(), Synced):
        frames.append(frame)
    assert not any(isinstance(f, DeviceEnvelope) for f in frames)
    assert [e.payload for f in frames if isinstance(f, Batch) for e in f.envelopes][-1] == (
        b"\x07group message"
    )

    # Live, to an online device.
    await a.send(DeviceSend(id=uuid.uuid4(), messages={addr(bob): b"live"}))
    live, _ = await b.until(DeviceEnvelope)
    assert (live.dseq, live.payload) == (2, b"live")

    await b.send(Ack(device_upto=2))
    await b.ping()
    await asyncio.sleep(0.2)
    await b.close()
    b = await kit.connect(bob)
    _, _, others = await b.hello()
    assert not any(isinstance(f, DeviceEnvelope) for f in others)
    assert inspector(server).count("device_queue") == 0


async def test_require_e2ee_refuses_plaintext_and_rest_errors(server_factory, server_kit):
    server = server_factory(env={"TIDINGS_REQUIRE_E2EE": "1", "TIDINGS_KEY_CLAIMS_PER_MINUTE": "3"})
    kit = server_kit(server)
    alice, bob, identity = await keyed_pair(kit)
    conv = (await kit.direct(alice, bob))["id"]
    a = await kit.connect(alice)
    await a.hello()
    plain_id = uuid.uuid4()
    await a.send(Send(id=plain_id, conv=conv, payload=b"in clear"))
    rejected = await a.expect(Rejected)
    assert rejected.id == plain_id and rejected.code == "bad_frame"
    await a.post(conv, b"", device_payloads={addr(bob): b"c"})

    r = await kit.http.put(
        "/v1/keys", content=key_upload(curve()), headers={**alice.headers, **JSON}
    )
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    r = await kit.http.put(
        "/v1/keys", content=b'{"identity_key": 1}', headers={**alice.headers, **JSON}
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_frame"
    r = await kit.http.put("/v1/keys", content=key_upload(identity))
    assert r.status_code == 401
    statuses = []
    for _ in range(4):
        r = await kit.http.get(f"/v1/keys/{bob.account_id}?device=1", headers=alice.headers)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]
    assert r.json()["code"] == "rate_limited"
    r = await kit.http.get(f"/v1/keys/{bob.account_id}?device=5", headers=bob.headers)
    assert r.status_code == 404


async def closed_code(peer: Any) -> int | None:
    """Read until the server closes the connection; its close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(peer.recv(), 10)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_replacing_the_identity_removes_the_other_devices(server, server_kit):
    kit = server_kit(server)
    alice, bob, identity = await keyed_pair(kit)
    laptop = await link_device(kit, alice)
    await upload_keys(kit, laptop, identity)
    assert (await kit.http.get("/v1/me", headers=laptop.headers)).status_code == 200
    peer = await kit.connect(laptop)
    await peer.hello()

    r = await kit.http.put(
        "/v1/keys",
        content=msgspec.json.encode(
            {**msgspec.json.decode(key_upload(curve())), "replace_identity": True}
        ),
        headers={**alice.headers, **JSON},
    )
    assert r.status_code == 200, r.text
    assert await closed_code(peer) == 4401
    assert (await kit.http.get("/v1/me", headers=laptop.headers)).status_code == 401
    assert (await kit.http.get("/v1/me", headers=alice.headers)).status_code == 200
    devices = inspector(server).rows("devices", "device_id", account_id=alice.account_id)
    assert devices == [(1,)]
    conv = await kit.direct(bob, alice)
    r = await kit.http.get(f"/v1/conversations/{conv['id']}/devices", headers=bob.headers)
    assert r.json()["devices"][alice.account_id] == [1]


async def test_a_device_removes_another_device_of_its_account(server, server_kit):
    kit = server_kit(server)
    alice, bob, identity = await keyed_pair(kit)
    laptop = await link_device(kit, alice)
    await upload_keys(kit, laptop, identity)
    conv = await kit.direct(bob, alice)
    path = f"/v1/conversations/{conv['id']}/devices"
    assert (await kit.http.get(path, headers=bob.headers)).json()["devices"][alice.account_id] == [
        1,
        2,
    ]
    peer = await kit.connect(laptop)
    await peer.hello()

    # Another account cannot name alice's device; a device cannot remove itself.
    r = await kit.http.delete(f"/v1/devices/{laptop.device_id}", headers=bob.headers)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await kit.http.delete(f"/v1/devices/{alice.device_id}", headers=alice.headers)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await kit.http.delete("/v1/devices/2")).status_code == 401
    assert (await kit.http.get("/v1/me", headers=laptop.headers)).status_code == 200

    r = await kit.http.delete(f"/v1/devices/{laptop.device_id}", headers=alice.headers)
    assert r.status_code == 204, r.text
    assert await closed_code(peer) == 4401
    assert (await kit.http.get("/v1/me", headers=laptop.headers)).status_code == 401
    assert (await kit.http.get(path, headers=bob.headers)).json()["devices"][alice.account_id] == [
        1
    ]
    r = await kit.http.delete(f"/v1/devices/{laptop.device_id}", headers=alice.headers)
    assert r.status_code == 404
    for table in ("devices", "device_keys", "one_time_keys", "pending", "device_queue"):
        left = inspector(server).count(
            table, account_id=alice.account_id, device_id=laptop.device_id
        )
        assert left == 0, table
