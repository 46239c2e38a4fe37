"""Prekey records as the owner stores them: one-time, signed and Kyber prekeys.

Serialization (our own, stable format): a format byte (``0x01``) followed by a protobuf with
1 id, 2 public key (libsignal-serialized), 3 private key (32 bytes; the Kyber secret key's
64-byte seed), 4 signature, 5 timestamp (milliseconds since the epoch, as libsignal).
"""

from __future__ import annotations

from typing import Final

from . import protobuf
from .errors import InvalidKeyError, InvalidStateError, SignalProtocolError
from .kem import KyberKeyPair, KyberPublicKey, KyberSecretKey
from .keys import IdentityKeyPair, KeyPair, PrivateKey, PublicKey

__all__ = ["KyberPreKeyRecord", "PreKeyRecord", "SignedPreKeyRecord"]

_FORMAT: Final = 0x01


def _decode(data: bytes, what: str) -> protobuf.Fields:
    if not data or data[0] != _FORMAT:
        raise InvalidStateError(f"unknown {what} record format")
    try:
        return protobuf.decode(data[1:])
    except SignalProtocolError as exc:
        raise InvalidStateError(f"corrupt {what} record") from exc


class PreKeyRecord:
    """A one-time prekey: id and Curve25519 key pair."""

    __slots__ = ("_key_pair", "id")

    def __init__(self, id: int, key_pair: KeyPair) -> None:
        self.id = id
        self._key_pair = key_pair

    @classmethod
    def generate(cls, id: int) -> PreKeyRecord:
        """A fresh prekey with this id."""
        return cls(id, KeyPair.generate())

    def key_pair(self) -> KeyPair:
        """The key pair."""
        return self._key_pair

    def public_key(self) -> PublicKey:
        """The public key."""
        return self._key_pair.public_key

    def private_key(self) -> PrivateKey:
        """The private key."""
        return self._key_pair.private_key

    def serialize(self) -> bytes:
        """Our stable storage format."""
        pair = self._key_pair
        return bytes((_FORMAT,)) + protobuf.encode(
            ((1, self.id), (2, pair.public_key.serialize()), (3, pair.private_key.serialize()))
        )

    @classmethod
    def deserialize(cls, data: bytes) -> PreKeyRecord:
        """Parse :meth:`serialize`'s output; :class:`InvalidStateError` if corrupt."""
        fields = _decode(data, "prekey")
        try:
            private = PrivateKey.deserialize(fields.required_bytes(3))
            public = PublicKey.deserialize(fields.required_bytes(2))
            return cls(fields.required_uint(1), KeyPair(private, public))
        except SignalProtocolError as exc:
            raise InvalidStateError("corrupt prekey record") from exc


class SignedPreKeyRecord:
    """A signed prekey: id, creation time, Curve25519 key pair and the identity's signature."""

    __slots__ = ("_key_pair", "id", "signature", "timestamp")

    def __init__(self, id: int, timestamp: int, key_pair: KeyPair, signature: bytes) -> None:
        self.id = id
        self.timestamp = timestamp
        self._key_pair = key_pair
        self.signature = signature

    @classmethod
    def generate(cls, id: int, identity: IdentityKeyPair, timestamp: int) -> SignedPreKeyRecord:
        """A fresh prekey signed by ``identity``; ``timestamp`` in ms since the epoch."""
        pair = KeyPair.generate()
        return cls(id, timestamp, pair, identity.calculate_signature(pair.public_key.serialize()))

    def key_pair(self) -> KeyPair:
        """The key pair."""
        return self._key_pair

    def public_key(self) -> PublicKey:
        """The public key."""
        return self._key_pair.public_key

    def private_key(self) -> PrivateKey:
        """The private key."""
        return self._key_pair.private_key

    def serialize(self) -> bytes:
        """Our stable storage format."""
        pair = self._key_pair
        return bytes((_FORMAT,)) + protobuf.encode(
            (
                (1, self.id),
                (2, pair.public_key.serialize()),
                (3, pair.private_key.serialize()),
                (4, self.signature),
                (5, self.timestamp),
            )
        )

    @classmethod
    def deserialize(cls, data: bytes) -> SignedPreKeyRecord:
        """Parse :meth:`serialize`'s output; :class:`InvalidStateError` if corrupt."""
        fields = _decode(data, "signed prekey")
        try:
            private = PrivateKey.deserialize(fields.required_bytes(3))
            public = PublicKey.deserialize(fields.required_bytes(2))
            return cls(
                fields.required_uint(1),
                fields.required_uint(5),
                KeyPair(private, public),
                fields.required_bytes(4),
            )
        except SignalProtocolError as exc:
            raise InvalidStateError("corrupt signed prekey record") from exc


class KyberPreKeyRecord:
    """A Kyber prekey: id, creation time, Kyber1024 key pair and the identity's signature."""

    __slots__ = ("_key_pair", "id", "signature", "timestamp")

    def __init__(self, id: int, timestamp: int, key_pair: KyberKeyPair, signature: bytes) -> None:
        self.id = id
        self.timestamp = timestamp
        self._key_pair = key_pair
        self.signature = signature

    @classmethod
    def generate(cls, id: int, identity: IdentityKeyPair, timestamp: int) -> KyberPreKeyRecord:
        """A fresh Kyber prekey signed by ``identity``; ``timestamp`` in ms since the epoch."""
        pair = KyberKeyPair.generate()
        return cls(id, timestamp, pair, identity.calculate_signature(pair.public_key.serialize()))

    def key_pair(self) -> KyberKeyPair:
        """The key pair."""
        return self._key_pair

    def public_key(self) -> KyberPublicKey:
        """The public key."""
        return self._key_pair.public_key

    def secret_key(self) -> KyberSecretKey:
        """The secret key."""
        return self._key_pair.secret_key

    def serialize(self) -> bytes:
        """Our stable storage format."""
        pair = self._key_pair
        return bytes((_FORMAT,)) + protobuf.encode(
            (
                (1, self.id),
                (2, pair.public_key.serialize()),
                (3, pair.secret_key.serialize()),
                (4, self.signature),
                (5, self.timestamp),
            )
        )

    @classmethod
    def deserialize(cls, data: bytes) -> KyberPreKeyRecord:
        """Parse :meth:`serialize`'s output; :class:`InvalidStateError` if corrupt."""
        fields = _decode(data, "Kyber prekey")
        try:
            secret = KyberSecretKey.deserialize(fields.required_bytes(3))
            public = KyberPublicKey.deserialize(fields.required_bytes(2))
            if secret.public_key() != public:
                raise InvalidKeyError("Kyber key pair halves do not match")
            return cls(
                fields.required_uint(1),
                fields.required_uint(5),
                KyberKeyPair(public, secret),
                fields.required_bytes(4),
            )
        except SignalProtocolError as exc:
            raise InvalidStateError("corrupt Kyber prekey record") from exc
