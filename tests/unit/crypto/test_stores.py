"""The in-memory stores behave like libsignal's."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.crypto import (
    Direction,
    IdentityKeyPair,
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
    InvalidKeyError,
    InvalidKyberPreKeyIdError,
    InvalidPreKeyIdError,
    InvalidSignedPreKeyIdError,
    KeyPair,
    KyberKeyPair,
    PreKeyBundle,
    ProtocolAddress,
    SessionRecord,
)


def test_identity_store_trust_on_first_use() -> None:
    ours = IdentityKeyPair.generate()
    store = InMemoryIdentityKeyStore(ours, 42)
    assert store.get_identity_key_pair() is ours
    assert store.get_local_registration_id() == 42
    address = ProtocolAddress("bob", 1)
    first, second = IdentityKeyPair.generate().identity_key, IdentityKeyPair.generate().identity_key
    assert store.get_identity(address) is None
    assert store.is_trusted_identity(address, first, Direction.SENDING)
    assert store.save_identity(address, first) is False  # new
    assert store.save_identity(address, first) is False  # unchanged
    assert store.is_trusted_identity(address, first, Direction.RECEIVING)
    assert not store.is_trusted_identity(address, second, Direction.RECEIVING)
    assert store.save_identity(address, second) is True  # replaced
    assert store.get_identity(address) == second
    assert store.is_trusted_identity(ProtocolAddress("bob", 2), first, Direction.SENDING)


def test_missing_prekeys_raise_their_errors() -> None:
    with pytest.raises(InvalidPreKeyIdError):
        InMemoryPreKeyStore().get_pre_key(1)
    with pytest.raises(InvalidSignedPreKeyIdError):
        InMemorySignedPreKeyStore().get_signed_pre_key(1)
    with pytest.raises(InvalidKyberPreKeyIdError):
        InMemoryKyberPreKeyStore().get_kyber_pre_key(1)


def test_session_store_hands_out_copies() -> None:
    store = InMemorySessionStore()
    address = ProtocolAddress("bob", 1)
    assert store.load_session(address) is None
    store.store_session(address, SessionRecord.new_fresh())
    loaded = store.load_session(address)
    assert loaded is not None and loaded is not store.load_session(address)
    assert store.load_serialized(address) == SessionRecord.new_fresh().serialize()


def test_address() -> None:
    address = ProtocolAddress("5e1c…", 3)
    assert str(address) == "5e1c….3"
    assert address == ProtocolAddress("5e1c…", 3)
    assert len({address, ProtocolAddress("5e1c…", 3)}) == 1


def test_bundle_parts_come_together() -> None:
    identity = IdentityKeyPair.generate()
    signed = KeyPair.generate().public_key
    common: dict[str, Any] = {
        "registration_id": 1,
        "device_id": 1,
        "signed_pre_key_id": 2,
        "signed_pre_key_public": signed,
        "signed_pre_key_signature": identity.calculate_signature(signed.serialize()),
        "identity_key": identity.identity_key,
    }
    with pytest.raises(InvalidKeyError):
        PreKeyBundle(pre_key_id=1, pre_key_public=None, **common)
    with pytest.raises(InvalidKeyError):
        PreKeyBundle(
            pre_key_id=None,
            pre_key_public=None,
            kyber_pre_key_id=3,
            kyber_pre_key_public=KyberKeyPair.generate().public_key,
            **common,
        )
