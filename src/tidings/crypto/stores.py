"""Storage interfaces the protocol functions use, and in-memory implementations.

The interfaces mirror libsignal's store traits, as synchronous methods. A
:class:`SessionStore`'s ``load_session`` must return a record the caller may change freely
(libsignal returns an owned copy); the protocol functions change it only when an operation
succeeds and then hand it back with ``store_session``. The in-memory session store keeps
serialized records, so every load is a fresh copy. (The ``SenderKeyStore`` lives with Sender
Keys.)
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from .address import ProtocolAddress
from .errors import (
    InvalidKyberPreKeyIdError,
    InvalidPreKeyIdError,
    InvalidSignedPreKeyIdError,
)
from .keys import IdentityKey, IdentityKeyPair
from .records import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from .session import SessionRecord

__all__ = [
    "Direction",
    "IdentityKeyStore",
    "InMemoryIdentityKeyStore",
    "InMemoryKyberPreKeyStore",
    "InMemoryPreKeyStore",
    "InMemorySessionStore",
    "InMemorySignedPreKeyStore",
    "KyberPreKeyStore",
    "PreKeyStore",
    "SessionStore",
    "SignedPreKeyStore",
]


class Direction(Enum):
    """Why an identity's trust is checked: to send to it or to accept from it."""

    SENDING = 0
    RECEIVING = 1


class IdentityKeyStore(Protocol):
    """Our identity and the identities we have seen for each peer."""

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Our identity key pair."""
        ...

    def get_local_registration_id(self) -> int:
        """Our registration id."""
        ...

    def save_identity(self, address: ProtocolAddress, identity: IdentityKey) -> bool:
        """Record ``identity`` for ``address``; True if it replaced a different key."""
        ...

    def is_trusted_identity(
        self, address: ProtocolAddress, identity: IdentityKey, direction: Direction
    ) -> bool:
        """Whether ``identity`` may be used for ``address``."""
        ...

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """The identity recorded for ``address``, if any."""
        ...


class PreKeyStore(Protocol):
    """Our one-time prekeys."""

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """The prekey; :class:`InvalidPreKeyIdError` if unknown."""
        ...

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store a prekey."""
        ...

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Forget a prekey (after its PreKey message was decrypted)."""
        ...


class SignedPreKeyStore(Protocol):
    """Our signed prekeys."""

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """The signed prekey; :class:`InvalidSignedPreKeyIdError` if unknown."""
        ...

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store a signed prekey."""
        ...


class KyberPreKeyStore(Protocol):
    """Our Kyber prekeys."""

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """The Kyber prekey; :class:`InvalidKyberPreKeyIdError` if unknown."""
        ...

    def save_kyber_pre_key(self, kyber_pre_key_id: int, record: KyberPreKeyRecord) -> None:
        """Store a Kyber prekey."""
        ...

    def mark_kyber_pre_key_used(self, kyber_pre_key_id: int) -> None:
        """Note that a PreKey message used this Kyber prekey (one-time ones may be removed)."""
        ...


class SessionStore(Protocol):
    """Session records per peer device."""

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """The record for ``address`` (a copy the caller may change), or None."""
        ...

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Save the record for ``address``."""
        ...


class InMemoryIdentityKeyStore:
    """Trust on first use, as libsignal's in-memory store: a known key must match exactly."""

    def __init__(self, identity_key_pair: IdentityKeyPair, registration_id: int) -> None:
        self._identity_key_pair = identity_key_pair
        self._registration_id = registration_id
        self._known: dict[ProtocolAddress, IdentityKey] = {}

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Our identity key pair."""
        return self._identity_key_pair

    def get_local_registration_id(self) -> int:
        """Our registration id."""
        return self._registration_id

    def save_identity(self, address: ProtocolAddress, identity: IdentityKey) -> bool:
        """Record ``identity``; True if it replaced a different key."""
        known = self._known.get(address)
        if known == identity:
            return False
        self._known[address] = identity
        return known is not None

    def is_trusted_identity(
        self, address: ProtocolAddress, identity: IdentityKey, direction: Direction
    ) -> bool:
        """True for an unknown address or the known key."""
        known = self._known.get(address)
        return known is None or known == identity

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """The recorded identity, if any."""
        return self._known.get(address)


class InMemoryPreKeyStore:
    """One-time prekeys in a dict."""

    def __init__(self) -> None:
        self._records: dict[int, PreKeyRecord] = {}

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """The prekey; :class:`InvalidPreKeyIdError` if unknown."""
        try:
            return self._records[pre_key_id]
        except KeyError:
            raise InvalidPreKeyIdError(f"no prekey with id {pre_key_id}") from None

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store a prekey."""
        self._records[pre_key_id] = record

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Forget a prekey."""
        self._records.pop(pre_key_id, None)

    def all_pre_key_ids(self) -> list[int]:
        """The ids of the stored prekeys."""
        return list(self._records)


class InMemorySignedPreKeyStore:
    """Signed prekeys in a dict."""

    def __init__(self) -> None:
        self._records: dict[int, SignedPreKeyRecord] = {}

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """The signed prekey; :class:`InvalidSignedPreKeyIdError` if unknown."""
        try:
            return self._records[signed_pre_key_id]
        except KeyError:
            raise InvalidSignedPreKeyIdError(
                f"no signed prekey with id {signed_pre_key_id}"
            ) from None

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store a signed prekey."""
        self._records[signed_pre_key_id] = record


class InMemoryKyberPreKeyStore:
    """Kyber prekeys in a dict; used ids are remembered in :attr:`used`, keys are kept."""

    def __init__(self) -> None:
        self._records: dict[int, KyberPreKeyRecord] = {}
        self.used: set[int] = set()

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """The Kyber prekey; :class:`InvalidKyberPreKeyIdError` if unknown."""
        try:
            return self._records[kyber_pre_key_id]
        except KeyError:
            raise InvalidKyberPreKeyIdError(f"no Kyber prekey with id {kyber_pre_key_id}") from None

    def save_kyber_pre_key(self, kyber_pre_key_id: int, record: KyberPreKeyRecord) -> None:
        """Store a Kyber prekey."""
        self._records[kyber_pre_key_id] = record

    def mark_kyber_pre_key_used(self, kyber_pre_key_id: int) -> None:
        """Remember the use; the key stays (it may be a last-resort key)."""
        self.used.add(kyber_pre_key_id)


class InMemorySessionStore:
    """Serialized session records in a dict: every load deserializes a fresh copy."""

    def __init__(self) -> None:
        self._records: dict[ProtocolAddress, bytes] = {}

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """A fresh copy of the record, or None."""
        data = self._records.get(address)
        return None if data is None else SessionRecord.deserialize(data)

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Save (serialize) the record."""
        self._records[address] = record.serialize()

    def load_serialized(self, address: ProtocolAddress) -> bytes | None:
        """The stored bytes, for tests comparing state before and after an operation."""
        return self._records.get(address)
