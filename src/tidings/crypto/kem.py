"""libsignal's Kyber prekeys: key type 0x08, pre-standard Kyber1024 built on ML-KEM-1024.

Round-3 Kyber1024 and ML-KEM-1024 share key and ciphertext formats and the encryption itself;
they differ in the final shared-secret derivation. So ML-KEM's key ``K`` is post-processed with
Kyber's round-3 KDF, ``SHAKE256(K ‖ SHA3-256(ciphertext), 32)``. (Kyber also hashes the random
coins once more and rejects with a different pseudo-random value; neither is observable by a
peer.) Keys and ciphertexts travel as ``0x08 ‖ 1568 bytes``. Secret keys are stored as their
64-byte ML-KEM seed, our own format.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM1024PrivateKey, MLKEM1024PublicKey

from .errors import InvalidKeyError, InvalidMessageError

__all__ = [
    "KYBER1024_TYPE",
    "KyberKeyPair",
    "KyberPublicKey",
    "KyberSecretKey",
    "decapsulate",
    "encapsulate",
    "kyber_kdf",
]

KYBER1024_TYPE: Final = 0x08
"""libsignal's type byte for Kyber1024 keys and ciphertexts."""

PUBLIC_KEY_LEN: Final = 1568
CIPHERTEXT_LEN: Final = 1568
SEED_LEN: Final = 64


def kyber_kdf(key: bytes, raw_ciphertext: bytes) -> bytes:
    """Round-3 Kyber's final step: ``SHAKE256(key ‖ SHA3-256(ciphertext))``, 32 bytes."""
    return hashlib.shake_256(key + hashlib.sha3_256(raw_ciphertext).digest()).digest(32)


class KyberPublicKey:
    """A Kyber1024 public key."""

    __slots__ = ("_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        """Wrap 1568 raw bytes; prefer :meth:`deserialize` for the typed form."""
        if len(raw) != PUBLIC_KEY_LEN:
            raise InvalidKeyError(f"Kyber1024 public key must be 1568 bytes, got {len(raw)}")
        try:
            self._key = MLKEM1024PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidKeyError("malformed Kyber1024 public key") from exc
        self._raw = bytes(raw)

    @classmethod
    def deserialize(cls, data: bytes) -> KyberPublicKey:
        """Parse ``0x08 ‖ 1568 bytes``; :class:`InvalidKeyError` on a bad type or length."""
        if not data:
            raise InvalidKeyError("empty KEM public key")
        if data[0] != KYBER1024_TYPE:
            raise InvalidKeyError(f"unknown KEM key type 0x{data[0]:02x}")
        return cls(data[1:])

    def serialize(self) -> bytes:
        """``0x08 ‖ 1568 bytes``."""
        return b"\x08" + self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KyberPublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)


class KyberSecretKey:
    """A Kyber1024 secret key, kept as its 64-byte ML-KEM seed."""

    __slots__ = ("_key", "_seed")

    def __init__(self, key: MLKEM1024PrivateKey) -> None:
        self._key = key
        self._seed = key.private_bytes_raw()

    @classmethod
    def deserialize(cls, data: bytes) -> KyberSecretKey:
        """Parse the 64-byte seed written by :meth:`serialize`."""
        if len(data) != SEED_LEN:
            raise InvalidKeyError(f"Kyber1024 secret seed must be 64 bytes, got {len(data)}")
        return cls(MLKEM1024PrivateKey.from_seed_bytes(data))

    def serialize(self) -> bytes:
        """The 64-byte seed. Secret: never log it."""
        return self._seed

    def public_key(self) -> KyberPublicKey:
        """The matching public key."""
        return KyberPublicKey(self._key.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return "KyberSecretKey(<secret>)"


class KyberKeyPair:
    """A Kyber1024 key pair."""

    __slots__ = ("public_key", "secret_key")

    def __init__(self, public_key: KyberPublicKey, secret_key: KyberSecretKey) -> None:
        self.public_key = public_key
        self.secret_key = secret_key

    @classmethod
    def generate(cls) -> KyberKeyPair:
        """A fresh random key pair."""
        secret = KyberSecretKey(MLKEM1024PrivateKey.generate())
        return cls(secret.public_key(), secret)

    def encapsulate(self) -> tuple[bytes, bytes]:
        """Encapsulate to this pair's public key; see :func:`encapsulate`."""
        return encapsulate(self.public_key)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Decapsulate with this pair's secret key; see :func:`decapsulate`."""
        return decapsulate(self.secret_key, ciphertext)


def encapsulate(public_key: KyberPublicKey) -> tuple[bytes, bytes]:
    """Return ``(ciphertext, shared_secret)``: ``0x08 ‖ 1568 bytes`` and 32 bytes."""
    key, raw_ciphertext = public_key._key.encapsulate()
    return b"\x08" + raw_ciphertext, kyber_kdf(key, raw_ciphertext)


def decapsulate(secret_key: KyberSecretKey, ciphertext: bytes) -> bytes:
    """The 32-byte secret in ``0x08 ‖ 1568 bytes``; :class:`InvalidMessageError` if malformed.

    A well-formed but forged ciphertext yields a pseudo-random secret (implicit rejection); the
    message MAC then fails.
    """
    if len(ciphertext) != 1 + CIPHERTEXT_LEN or ciphertext[0] != KYBER1024_TYPE:
        raise InvalidMessageError("malformed Kyber1024 ciphertext")
    raw_ciphertext = ciphertext[1:]
    return kyber_kdf(secret_key._key.decapsulate(raw_ciphertext), raw_ciphertext)
