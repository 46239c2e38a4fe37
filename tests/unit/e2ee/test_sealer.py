"""The outgoing pipeline, sans I/O: a plaintext Send becomes an encrypted one; groups distribute
their sender key first and wait for DeviceAccepted. The sealer yields its requests; the test
answers them."""

from __future__ import annotations

import uuid

import pytest

from tidings.client.core.sealing import (
    LookupConversation,
    Opened,
    Refused,
    Request,
    RequestFailed,
    Sealed,
    Sealer,
    SealOutcome,
    SendToDevices,
    Steps,
    run_steps,
)
from tidings.crypto import (
    IdentityKey,
    IdentityKeyPair,
    InvalidSessionError,
    ProtocolAddress,
    SessionRecord,
)
from tidings.protocol import ClientFrame, DeviceAccepted, DeviceSend, Envelope, Send

from .parties import Device, Directory, answer, device_envelopes


class _Seal:
    """A device's sealer with every request answered in memory."""

    def __init__(
        self, device: Device, kind: str, members: set[str], sent: list[ClientFrame]
    ) -> None:
        self.sealer = Sealer(device.e2ee.core)
        self.directory = answer(device.directory)
        self.kind, self.members, self.sent = kind, frozenset(members), sent

    def reply(self, request: Request) -> object:
        if isinstance(request, LookupConversation):
            return self.kind, self.members
        if isinstance(request, SendToDevices):
            self.sent.append(request.frame)
            return DeviceAccepted(id=request.frame.id)
        return self.directory(request)

    def outcome(self, frame: Send) -> SealOutcome:
        return run_steps(self.sealer.seal(frame), self.reply)

    async def seal(self, frame: Send) -> Send:
        outcome = self.outcome(frame)
        assert isinstance(outcome, Sealed), outcome
        return outcome.send


def _sealer(device: Device, kind: str, members: set[str], sent: list[ClientFrame]) -> _Seal:
    return _Seal(device, kind, members, sent)


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


async def test_a_burst_writes_its_session_once_before_the_commit() -> None:
    """Messages sealed inside one guarded transaction (the runtime's burst) advance the
    session in memory and write it once as the transaction ends, before its commit; anything
    else that could roll back writes it first, and a failed message never takes it back."""
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    sealer = _sealer(alice, "direct", {"alice", "bob"}, [])
    first = await sealer.seal(Send(id=uuid.uuid4(), conv="d", payload=b"hello"))
    keys = alice.keys

    def stored_index() -> int:
        (blob,) = alice.db.execute("SELECT record FROM e2ee_sessions").fetchone()
        state = SessionRecord.deserialize(bytes(blob)).session_state()
        assert state is not None and state.sender_chain is not None
        return state.sender_chain.index

    def seal_all(count: int) -> list[Send]:
        frames = [Send(id=uuid.uuid4(), conv="d", payload=b"m%d" % n) for n in range(count)]
        outcomes = run_steps(sealer.sealer.seal_all(frames), sealer.reply)
        return [o.send for o in outcomes if isinstance(o, Sealed)]

    start = stored_index()
    alice.db.execute("BEGIN IMMEDIATE")
    with keys.guarded():
        burst = seal_all(5)
        assert stored_index() == start  # waiting in memory
        with pytest.raises(RuntimeError), keys.transaction():
            assert stored_index() == start + 5  # written before anything else may roll back
            raise RuntimeError
        burst += seal_all(2)
        assert stored_index() == start + 5
        advanced = keys.load_session(ProtocolAddress("bob", 1))
        with pytest.raises(RuntimeError), keys.sending(), keys.transaction():
            raise RuntimeError  # a message failing (another of its devices refused)
        assert keys.load_session(ProtocolAddress("bob", 1)) is advanced  # not taken back
    assert stored_index() == start + 7  # as the guarded transaction ended
    alice.db.execute("COMMIT")
    for n, sealed in enumerate([first, *burst]):
        env = Envelope(
            conv="d",
            seq=n + 1,
            id=sealed.id,
            sender="alice",
            sender_device=1,
            ts=0,
            payload=b"",
            device_payload=sealed.device_payloads["bob:1"],
        )
        assert isinstance(bob.e2ee.open_envelope(env), Opened)


def _opens_in_order(bob: Device, sealed: list[Send]) -> None:
    """Each of ``sealed`` decrypts on ``bob``, in this order, to what it was sealed from."""
    for n, frame in enumerate(sealed):
        env = Envelope(
            conv=frame.conv,
            seq=n + 1,
            id=frame.id,
            sender="alice",
            sender_device=1,
            ts=0,
            payload=b"",
            device_payload=frame.device_payloads["bob:1"],
        )
        assert isinstance(bob.e2ee.open_envelope(env), Opened), n


async def test_a_run_to_one_direct_conversation_is_sealed_together() -> None:
    """A burst to one direct conversation looks at its members, devices and sessions once
    (one lookup for the run, none for the next) and each message still gets its own
    ciphertext, in order; runs to other conversations keep their place."""
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    directory.conversations["e"] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    sealer = _sealer(alice, "direct", {"alice", "bob"}, [])
    asked: list[Request] = []

    def reply(request: Request) -> object:
        asked.append(request)
        return sealer.reply(request)

    def frames(conv: str, count: int) -> list[Send]:
        return [
            Send(id=uuid.uuid4(), conv=conv, payload=b"%s%d" % (conv.encode(), n))
            for n in range(count)
        ]

    burst = frames("d", 5) + frames("e", 1) + frames("d", 3)
    outcomes = run_steps(sealer.sealer.seal_all(burst), reply)
    assert [type(o) for o in outcomes] == [Sealed] * len(burst)
    sealed = [o.send for o in outcomes if isinstance(o, Sealed)]
    assert [s.id for s in sealed] == [f.id for f in burst]
    assert sum(isinstance(r, LookupConversation) for r in asked) == 2  # "d" once, "e" once
    assert len({s.device_payloads["bob:1"] for s in sealed}) == len(burst)
    again = run_steps(sealer.sealer.seal_all(frames("d", 4)), reply)
    assert sum(isinstance(r, LookupConversation) for r in asked) == 2  # known now
    _opens_in_order(bob, sealed + [o.send for o in again if isinstance(o, Sealed)])


async def test_a_run_that_fails_is_sealed_one_by_one() -> None:
    """If encrypting a run fails part way, none of it is used: each message is sealed on its
    own and gets the outcome it would have got alone; the keys the failed attempt used are
    skipped by the receiver."""
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    alice, bob = Device(directory, "alice", 1), Device(directory, "bob", 1)
    sealer = _sealer(alice, "direct", {"alice", "bob"}, [])
    first = await sealer.seal(Send(id=uuid.uuid4(), conv="d", payload=b"first"))  # kind known
    core = alice.e2ee.core
    encrypt, calls = core._encrypt_to, [0]

    def third_fails(address: ProtocolAddress, plaintext: bytes) -> bytes:
        calls[0] += 1
        if calls[0] == 3:
            raise InvalidSessionError("broken for this test")
        return encrypt(address, plaintext)

    core._encrypt_to = third_fails  # type: ignore[method-assign]
    burst = [Send(id=uuid.uuid4(), conv="d", payload=b"m%d" % n) for n in range(4)]
    outcomes = run_steps(sealer.sealer.seal_all(burst), sealer.reply)
    assert [type(o) for o in outcomes] == [Sealed] * 4
    assert calls[0] == 3 + 4  # the run (stopped at its third), then each alone
    _opens_in_order(bob, [first] + [o.send for o in outcomes if isinstance(o, Sealed)])


async def test_a_blocked_identity_refuses_every_message_of_a_run() -> None:
    directory = Directory()
    directory.conversations["d"] = {"alice", "bob"}
    alice = Device(directory, "alice", 1)
    Device(directory, "bob", 1)
    sealer = _sealer(alice, "direct", {"alice", "bob"}, [])
    await sealer.seal(Send(id=uuid.uuid4(), conv="d", payload=b"first"))
    alice.keys.set_verified("bob", True)
    alice.keys.observe_identity("bob", IdentityKeyPair.generate().identity_key)
    burst = [Send(id=uuid.uuid4(), conv="d", payload=b"m%d" % n) for n in range(3)]
    outcomes = run_steps(sealer.sealer.seal_all(burst), sealer.reply)
    assert outcomes == [Refused("identity_changed")] * 3


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
    assert sealer.outcome(Send(id=uuid.uuid4(), conv="d", payload=b"x")) == Refused(
        "identity_changed"
    )


def _failing(steps: Steps[SealOutcome], failure: RequestFailed) -> SealOutcome:
    """Run ``steps``, failing its first request with ``failure``."""
    steps.send(None)
    try:
        steps.throw(failure)
    except StopIteration as done:
        outcome: SealOutcome = done.value
        return outcome
    raise AssertionError("the sealer asked for more after a failure")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (RequestFailed("not_member", 403), "refused"),
        (RequestFailed("not_found", 404), "refused"),
        (RequestFailed("rate_limited", 429), "later"),
        (RequestFailed("timeout"), "later"),
    ],
)
def test_the_core_decides_which_failures_are_for_good(
    failure: RequestFailed, expected: str
) -> None:
    directory = Directory()
    alice = Device(directory, "alice", 1)
    sealer = Sealer(alice.e2ee.core)
    outcome = _failing(sealer.seal(Send(id=uuid.uuid4(), conv="d", payload=b"x")), failure)
    assert type(outcome).__name__.lower() == expected
    assert outcome.code if isinstance(outcome, Refused) else outcome.reason == failure.code
