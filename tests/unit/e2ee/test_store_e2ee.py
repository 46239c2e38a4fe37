"""The client store with the encryption layer: a decrypted message and the session state it
advanced commit in one transaction; undecryptable envelopes become placeholders; group
messages that wait for their sender key appear when it arrives."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tidings.client import engine as fx
from tidings.client.e2ee import EndToEnd
from tidings.client.store import UNDECRYPTABLE_BODY, Store
from tidings.client.types import Account
from tidings.crypto import IdentityKeyPair, ProtocolAddress
from tidings.protocol import DeviceEnvelope, Envelope
from tidings.protocol.content import Text, encode_content

from .parties import Device, Directory, _DirectoryView

CONV = "d1"


def _bob_store(tmp_path: Path, directory: Directory) -> Store:
    store = Store(tmp_path / "tidings.db")
    store.set_account(Account("bob", "bob", 1, "http://server.invalid"))
    store.keys.set_identity(IdentityKeyPair.generate())
    directory.upload("bob", 1, store.keys.initial_upload())
    store.e2ee = EndToEnd(store.keys, "bob", 1, _DirectoryView(directory))
    return store


def _envelope(seq: int, device_payload: bytes = b"", payload: bytes = b"") -> Envelope:
    return Envelope(
        conv=CONV,
        seq=seq,
        id=uuid.uuid4(),
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
    payloads = await alice.e2ee.encrypt_direct(CONV, encode_content(Text(body="hello")))
    env = _envelope(1, payloads["bob:1"])
    effects: list[fx.Effect] = [fx.StoreIncoming(CONV, (env,)), fx.AdvanceCursor(CONV, 1)]
    prekeys = store.keys.pre_key_count()

    def broken(*args: object) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_content", broken)
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
    changes = store.apply([fx.StoreIncoming(CONV, (bad,))])
    assert changes.undecryptable == [("alice", CONV, bad.id)]
    shown = store.message(bad.id)
    assert shown is not None and shown.kind == "system" and shown.body == UNDECRYPTABLE_BODY
    assert store.e2ee is not None
    assert store.e2ee.take_resets() == [ProtocolAddress("alice", 1)]

    distribution = await alice.e2ee.group_distribution(CONV)
    alice.e2ee.distributed(distribution)
    payload, _ = await alice.e2ee.encrypt_group(CONV, encode_content(Text(body="to the group")))
    early = _envelope(2, payload=payload)
    changes = store.apply([fx.StoreIncoming(CONV, (early,))])
    assert changes.added == [] and store.message(early.id) is None
    share = DeviceEnvelope(
        dseq=1,
        id=uuid.uuid4(),
        sender="alice",
        sender_device=1,
        ts=3,
        payload=distribution.messages["bob:1"],
    )
    changes = store.apply([fx.StoreDeviceEnvelope(share)])
    assert changes.added == [early.id]
    message = store.message(early.id)
    assert message is not None and message.body == "to the group"
