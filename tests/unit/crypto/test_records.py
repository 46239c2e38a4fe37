"""Stable, versioned serialization of every record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.crypto import (
    IdentityKeyPair,
    InvalidStateError,
    KyberPreKeyRecord,
    PreKeyRecord,
    SessionRecord,
    SignedPreKeyRecord,
)
from tidings.crypto.session import PendingPreKey, ReceiverChain, SenderChain, SessionState

from .parties import Party


def _golden_state() -> SessionState:
    return SessionState(
        session_version=4,
        local_identity=b"\x05" + b"L" * 32,
        remote_identity=b"\x05" + b"R" * 32,
        root_key=b"K" * 32,
        previous_counter=7,
        sender_chain=SenderChain(b"\x05" + b"S" * 32, b"s" * 32, b"C" * 32, 3),
        receiver_chains=[ReceiverChain(b"\x05" + b"T" * 32, b"c" * 32, 9, {5: b"m" * 32})],
        pending_pre_key=PendingPreKey(11, 12, b"\x05" + b"B" * 32, 1_700_000_000, 13, b"\x08ct"),
        remote_registration_id=99,
        local_registration_id=98,
        alice_base_key=b"\x05" + b"B" * 32,
    )


# The format is ours, but once written it must keep reading: this pins it.
_GOLDEN_RECORD = (
    "01"  # format
    "92"  # [current, previous]
    "9b04"  # SessionState: 11 fields, version 4
    "c42105" + "4c" * 32 + "c42105" + "52" * 32 + "c420" + "4b" * 32 + "07"
    "94c42105" + "53" * 32 + "c420" + "73" * 32 + "c420" + "43" * 32 + "03"  # sender chain
    "9194c42105"
    + "54" * 32
    + "c420"
    + "63" * 32
    + "098105c420"
    + "6d" * 32  # receiver chains
    + "960b0cc42105"
    + "42" * 32
    + "ce6553f1000dc403086374"  # pending prekey
    "6362c42105"
    + "42" * 32  # registration ids, base key
    + "90"  # no archived states
)


def test_session_record_format_is_stable() -> None:
    data = bytes.fromhex(_GOLDEN_RECORD)
    assert SessionRecord(_golden_state()).serialize() == data
    again = SessionRecord.deserialize(data)
    assert again.session_state() == _golden_state()
    assert again.serialize() == data


def test_session_record_round_trip_with_archive_and_skipped_keys(alice: Party, bob: Party) -> None:
    alice.start_session(bob)
    wires = [alice.encrypt(bob, b"%d" % i) for i in range(5)]
    bob.decrypt(alice, wires[-1])  # four skipped keys
    alice.start_session(bob)  # one archived state
    for party, other in ((alice, bob), (bob, alice)):
        data = party.stored(other)
        assert data is not None
        record = SessionRecord.deserialize(data)
        assert record.serialize() == data
    record = SessionRecord.deserialize(bob.stored(alice) or b"")
    state = record.session_state()
    assert state is not None and len(state.receiver_chains[0].message_keys) == 4
    alice_record = SessionRecord.deserialize(alice.stored(bob) or b"")
    assert alice_record.previous_session_count() == 1
    [(index, archived)] = list(alice_record.previous_session_states())
    assert index == 0 and archived.pending_pre_key is None  # archiving forgets it


def test_fresh_record_round_trip() -> None:
    fresh = SessionRecord.new_fresh()
    again = SessionRecord.deserialize(fresh.serialize())
    assert again.session_state() is None and not again.has_current_state()
    with pytest.raises(InvalidStateError):
        again.session_version()


@pytest.mark.parametrize("data", [b"", b"\x02", b"\x01", b"\x01\xc1", b"\x01\x92\x01\x02"])
def test_corrupt_session_record(data: bytes) -> None:
    with pytest.raises(InvalidStateError):
        SessionRecord.deserialize(data)


@given(st.binary(max_size=200))
def test_session_record_garbage(data: bytes) -> None:
    try:
        record = SessionRecord.deserialize(b"\x01" + data)
    except InvalidStateError:
        return
    record.serialize()


def test_prekey_records_round_trip() -> None:
    identity = IdentityKeyPair.generate()
    prekey = PreKeyRecord.generate(7)
    again = PreKeyRecord.deserialize(prekey.serialize())
    assert again.id == 7 and again.public_key() == prekey.public_key()
    assert again.private_key().serialize() == prekey.private_key().serialize()
    assert again.serialize() == prekey.serialize()

    signed = SignedPreKeyRecord.generate(8, identity, 1_700_000_000_123)
    again_signed = SignedPreKeyRecord.deserialize(signed.serialize())
    assert (again_signed.id, again_signed.timestamp) == (8, 1_700_000_000_123)
    assert again_signed.serialize() == signed.serialize()
    assert identity.identity_key.verify_signature(
        again_signed.public_key().serialize(), again_signed.signature
    )

    kyber = KyberPreKeyRecord.generate(9, identity, 1_700_000_000_456)
    again_kyber = KyberPreKeyRecord.deserialize(kyber.serialize())
    assert (again_kyber.id, again_kyber.timestamp) == (9, 1_700_000_000_456)
    assert again_kyber.public_key() == kyber.public_key()
    assert again_kyber.serialize() == kyber.serialize()
    assert identity.identity_key.verify_signature(
        again_kyber.public_key().serialize(), again_kyber.signature
    )
    ciphertext, shared = again_kyber.key_pair().encapsulate()
    assert kyber.key_pair().decapsulate(ciphertext) == shared


@pytest.mark.parametrize("cls", [PreKeyRecord, SignedPreKeyRecord, KyberPreKeyRecord])
@pytest.mark.parametrize("data", [b"", b"\x02\x08\x01", b"\x01\x08", b"\x01\x08\x01"])
def test_corrupt_prekey_records(cls: type[PreKeyRecord], data: bytes) -> None:
    with pytest.raises(InvalidStateError):
        cls.deserialize(data)


def test_kyber_record_with_mismatched_halves() -> None:
    identity = IdentityKeyPair.generate()
    a = KyberPreKeyRecord.generate(1, identity, 0)
    b = KyberPreKeyRecord.generate(1, identity, 0)
    mixed = KyberPreKeyRecord(1, 0, type(a.key_pair())(a.public_key(), b.secret_key()), b"")
    with pytest.raises(InvalidStateError):
        KyberPreKeyRecord.deserialize(mixed.serialize())
