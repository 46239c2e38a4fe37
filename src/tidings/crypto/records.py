"""Prekey records as the owner stores them: one-time, signed and Kyber prekeys.

Serialization (our own, stable format): a format byte (``0x01``) followed by a protobuf with
1 id, 2 public key (libsignal-serialized), 3 private key (32 bytes; the Kyber secret key's
64-byte seed), 4 signature, 5 timestamp (milliseconds since the epoch, as libsignal).
"""

from __future__ import annotations

import abc
from typing import ClassVar, Final, Generic, Self, TypeVar

from . import protobuf
from .errors import InvalidKeyError, InvalidStateError, SignalProtocolError
from .kem import KyberKeyPair, KyberPublicKey, KyberSecretKey
from .keys import IdentityKeyPair, KeyPair, PrivateKey, PublicKey

__all__ = ["KyberPreKeyRecord", "PreKeyRecord", "SignedPreKeyRecord"]

_FORMAT: Final = 0x01

_Pair = TypeVar("_Pair", KeyPair, KyberKeyPair)


def _decode(data: bytes, what: str) -> protobuf.Fields:
    if not data or data[0] != _FORMAT:
        raise InvalidStateError(f"unknown {what} record format")
    try:
        return protobuf.decode(data[1:])
    except SignalProtocolError as exc:
        raise InvalidStateError(f"corrupt {what} record") from exc


def _curve_pair(fields: protobuf.Fields) -> KeyPair:
    """The Curve25519 key pair of fields 3 (private) and 2 (public)."""
    private = PrivateKey.deserialize(fields.required_bytes(3))
    public = PublicKey.deserialize(fields.required_bytes(2))
    return KeyPair(private, public)


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
            return cls(fields.required_uint(1), _curve_pair(fields))
        except SignalProtocolError as exc:
            raise InvalidStateError("corrupt prekey record") from exc


class _SignedPreKey(abc.ABC, Generic[_Pair]):
    """What signed and Kyber prekeys share: id, creation time, a key pair whose public key the
    identity signed, and the storage format. Subclasses say how to make, split and read their
    kind of key pair."""

    __slots__ = ("_key_pair", "id", "signature", "timestamp")

    #: what the record is called in errors
    _WHAT: ClassVar[str]

    def __init__(self, id: int, timestamp: int, key_pair: _Pair, signature: bytes) -> None:
        self.id = id
        self.timestamp = timestamp
        self._key_pair: _Pair = key_pair
        self.signature = signature

    @staticmethod
    @abc.abstractmethod
    def _new_pair() -> _Pair:
        """A fresh key pair of this record's kind."""

    @staticmethod
    @abc.abstractmethod
    def _secret_bytes(pair: _Pair) -> bytes:
        """The secret half as stored in field 3."""

    @staticmethod
    @abc.abstractmethod
    def _read_pair(fields: protobuf.Fields) -> _Pair:
        """The key pair of fields 2 and 3; :class:`SignalProtocolError` if they are bad."""

    @classmethod
    def generate(cls, id: int, identity: IdentityKeyPair, timestamp: int) -> Self:
        """A fresh prekey signed by ``identity``; ``timestamp`` in ms since the epoch."""
        pair = cls._new_pair()
        return cls(id, timestamp, pair, identity.calculate_signature(pair.public_key.serialize()))

    def key_pair(self) -> _Pair:
        """The key pair."""
        return self._key_pair

    def serialize(self) -> bytes:
        """Our stable storage format."""
        pair = self._key_pair
        return bytes((_FORMAT,)) + protobuf.encode(
            (
                (1, self.id),
                (2, pair.public_key.serialize()),
                (3, self._secret_bytes(pair)),
                (4, self.signature),
                (5, self.timestamp),
            )
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parse :meth:`serialize`'s output; :class:`InvalidStateError` if corrupt."""
        fields = _decode(data, cls._WHAT)
        try:
            return cls(
                fields.required_uint(1),
                fields.required_uint(5),
                cls._read_pair(fields),
                fields.required_bytes(4),
            )
        except SignalProtocolError as exc:
            raise InvalidStateError(f"corrupt {cls._WHAT} record") from exc


class SignedPreKeyRecord(_SignedPreKey[KeyPair]):
    """A signed prekey: id, creation time, Curve25519 key pair and the identity's signature."""

    __slots__ = ()
    _WHAT = "signed prekey"

    _new_pair = staticmethod(KeyPair.generate)
    _read_pair = staticmethod(_curve_pair)

    @staticmethod
    def _secret_bytes(pair: KeyPair) -> bytes:
        return pair.private_key.serialize()

    def public_key(self) -> PublicKey:
        """The public key."""
        return self._key_pair.public_key

    def private_key(self) -> PrivateKey:
        """The private key."""
        return self._key_pair.private_key


def _kyber_pair(fields: protobuf.Fields) -> KyberKeyPair:
    """The Kyber key pair of fields 3 (secret key seed) and 2 (public), which must match.

    The stored public key is compared as bytes with the one the seed expands to, and only that
    one is loaded: loading an ML-KEM public key (its modulus check) costs some 24 µs, and a
    client loads this record for every PreKey message it receives.
    """
    secret = KyberSecretKey.deserialize(fields.required_bytes(3))
    public = secret.public_key()
    if public.serialize() != fields.required_bytes(2):
        raise InvalidKeyError("Kyber key pair halves do not match")
    return KyberKeyPair(public, secret)


class KyberPreKeyRecord(_SignedPreKey[KyberKeyPair]):
    """A Kyber prekey: id, creation time, Kyber1024 key pair and the identity's signature."""

    __slots__ = ()
    _WHAT = "Kyber prekey"

    _new_pair = staticmethod(KyberKeyPair.generate)
    _read_pair = staticmethod(_kyber_pair)

    @staticmethod
    def _secret_bytes(pair: KyberKeyPair) -> bytes:
        return pair.secret_key.serialize()

    def public_key(self) -> KyberPublicKey:
        """The public key."""
        return self._key_pair.public_key

    def secret_key(self) -> KyberSecretKey:
        """The secret key."""
        return self._key_pair.secret_key
