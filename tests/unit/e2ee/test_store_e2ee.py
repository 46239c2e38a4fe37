"""The client store with the opener in front of it (as the runtime runs them): a decrypted
message and the session state it advanced commit in one transaction; undecryptable envelopes
become placeholders; group messages that wait for their sender key appear when it arrives."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tidings.client.core import engine
from tidings.client.core.opening import Opener
from tidings.client.core.payload import encode_bound
from tidings.client.core.sealing import EndToEnd
from tidings.client.store import UNDECRYPTABLE_BODY, Changes, LocalStore
from tidings.client.types import Account
from tidings.crypto import IdentityKeyPair, ProtocolAddress
from tidings.protocol import DeviceEnvelope, Envelope
from tidings.protocol.content import Text, encode_content

from .parties import Device, Directory

CONV = "d1"


class _Bob:
    """Bob's store, and the runtime's write path: open and store in one transaction."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.e2ee = EndToEnd(store.keys, "bob", 1)
        self.opener = Opener(self.e2ee)
        self.keys = store.keys

    def apply(self, effects: list[engine.Effect]) -> Changes:
        with self.store.transaction():
            return self.store.apply(self.opener.open(effects))

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def _bob_store(tmp_path: Path, directory: Directory) -> _Bob:
    store = LocalStore(tmp_path / "tidings.db")
    store.set_account(Account("bob", "bob", 1, "http://server.invalid"))
    store.keys.set_identity(IdentityKeyPair.generate())
    directory.upload("bob", 1, store.keys.initial_upload())
    return _Bob(store)


def _envelope(
    seq: int,
    device_payload: bytes = b"",
    payload: bytes = b"",
    msg_id: uuid.UUID | None = None,
    conv: str = CONV,
) -> Envelope:
    return Envelope(
        conv=conv,
        seq=seq,
        id=msg_id or uuid.uuid4(),
        sender="alice",
        sender_device=1,
        ts=seq,
        payload=payload,
        device_payload=device_payload,
    )


async def test_message_and_session_commit_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = Directory()
    directory.conversations[CONV] = {"alice", "bob"}
    alice = Device(directory, "alice", 1)
    store = _bob_store(tmp_path, directory)
    msg_id = uuid.uuid4()
    payloads = await alice.e2ee.encrypt_direct(CONV, encode_bound(Text(body="hello"), CONV, msg_id))
    env = _envelope(1, payloads["bob:1"], msg_id=msg_id)
    effects: list[engine.Effect] = [
        engine.StoreIncoming(CONV, (env,)),
        engine.AdvanceCursor(CONV, 1),
    ]
    prekeys = store.keys.pre_key_count()

    def broken(*args: object) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.store, "_content", broken)
    with pytest.raises(RuntimeError):
        store.apply(effects)
    # nothing of the decryption stuck: no session, the one-time prekey is still there
    assert store.keys.load_session(ProtocolAddress("alice", 1)) is None
    assert store.keys.pre_key_count() == prekeys
    assert store.message(env.id) is None

    monkeypatch.undo()
    changes = store.apply(effects)
    assert changes.added == [env.id]
    message = store.message(env.id)
    assert message is not None and message.body == "hello"
    assert store.keys.load_session(ProtocolAddress("alice", 1)) is not None
    assert store.keys.pre_key_count() == prekeys - 1


async def test_undecryptable_is_a_placeholder_and_group_messages_wait(tmp_path: Path) -> None:
    directory = Directory()
    directory.conversations[CONV] = {"alice", "bob"}
    alice = Device(directory, "alice", 1)
    store = _bob_store(tmp_path, directory)
    bad = _envelope(1, b"\x02not a message")
    changes = store.apply([engine.StoreIncoming(CONV, (bad,))])
    assert changes.undecryptable == [("alice", CONV, bad.id)]
    shown = store.message(bad.id)
    assert shown is not None and shown.kind == "undecryptable" and shown.body == UNDECRYPTABLE_BODY
    assert store.e2ee is not None
    assert store.e2ee.take_resets() == [ProtocolAddress("alice", 1)]

    distribution = await alice.e2ee.group_distribution(CONV)
    alice.e2ee.distributed(distribution)
    msg_id = uuid.uuid4()
    content = encode_bound(Text(body="to the group"), CONV, msg_id)
    payload, _ = await alice.e2ee.encrypt_group(CONV, content)
    early = _envelope(2, payload=payload, msg_id=msg_id)
    changes = store.apply([engine.StoreIncoming(CONV, (early,))])
    assert changes.added == [] and store.message(early.id) is None
    share = DeviceEnvelope(
        dseq=1,
        id=uuid.uuid4(),
        sender="alice",
        sender_device=1,
        ts=3,
        payload=distribution.messages["bob:1"],
    )
    changes = store.apply([engine.StoreDeviceEnvelope(share)])
    assert changes.added == [early.id]
    message = store.message(early.id)
    assert message is not None and message.body == "to the group"


async def test_a_ciphertext_moved_or_relabelled_by_the_server_is_refused(tmp_path: Path) -> None:
    directory = Directory()
    directory.conversations[CONV] = {"alice", "bob"}
    directory.conversations["d2"] = {"alice", "bob"}
    alice = Device(directory, "alice", 1)
    store = _bob_store(tmp_path, directory)
    assert store.e2ee is not None

    # a valid ciphertext of CONV, delivered by the server in conversation d2
    first = uuid.uuid4()
    payloads = await alice.e2ee.encrypt_direct(CONV, encode_bound(Text(body="for d1"), CONV, first))
    moved = _envelope(1, payloads["bob:1"], msg_id=first, conv="d2")
    changes = store.apply([engine.StoreIncoming("d2", (moved,))])
    assert changes.undecryptable == [("alice", "d2", first)]
    shown = store.message(first)
    assert shown is not None and shown.kind == "undecryptable" and shown.body == UNDECRYPTABLE_BODY
    # the session is fine: no reset request for it
    assert store.e2ee.take_resets() == []

    # a valid ciphertext under a rewritten envelope id
    second = uuid.uuid4()
    payloads = await alice.e2ee.encrypt_direct(
        CONV, encode_bound(Text(body="real id"), CONV, second)
    )
    relabelled = _envelope(2, payloads["bob:1"], msg_id=uuid.uuid4())
    changes = store.apply([engine.StoreIncoming(CONV, (relabelled,))])
    assert changes.undecryptable == [("alice", CONV, relabelled.id)]
    assert store.message(second) is None
    shown = store.message(relabelled.id)
    assert shown is not None and shown.body == UNDECRYPTABLE_BODY
    assert store.e2ee.take_resets() == []

    # content without any binding (an old client, or a server-made plaintext) is refused too
    payloads = await alice.e2ee.encrypt_direct(CONV, encode_content(Text(body="unbound")))
    unbound = _envelope(3, payloads["bob:1"])
    assert store.apply([engine.StoreIncoming(CONV, (unbound,))]).undecryptable

    # a group message released later by its sender key is checked as well
    distribution = await alice.e2ee.group_distribution(CONV)
    alice.e2ee.distributed(distribution)
    third = uuid.uuid4()
    payload, _ = await alice.e2ee.encrypt_group(CONV, encode_bound(Text(body="g"), CONV, third))
    early = _envelope(4, payload=payload, msg_id=third, conv="d2")
    assert store.apply([engine.StoreIncoming("d2", (early,))]).added == []
    share = DeviceEnvelope(
        dseq=1,
        id=uuid.uuid4(),
        sender="alice",
        sender_device=1,
        ts=5,
        payload=distribution.messages["bob:1"],
    )
    changes = store.apply([engine.StoreDeviceEnvelope(share)])
    assert changes.undecryptable == [("alice", "d2", third)]
    shown = store.message(third)
    assert shown is not None and shown.body == UNDECRYPTABLE_BODY

    # and the right conversation and id go through
    fourth = uuid.uuid4()
    payloads = await alice.e2ee.encrypt_direct(CONV, encode_bound(Text(body="fine"), CONV, fourth))
    changes = store.apply(
        [engine.StoreIncoming(CONV, (_envelope(6, payloads["bob:1"], msg_id=fourth),))]
    )
    assert changes.added == [fourth] and changes.undecryptable == []
    message = store.message(fourth)
    assert message is not None and message.body == "fine"
