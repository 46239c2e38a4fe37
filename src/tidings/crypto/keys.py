"""Curve25519 keys as libsignal serializes them, with X25519 agreement and XEdDSA signatures.

A public key travels as ``0x05 ‖ 32 bytes`` (libsignal's ``KeyType::Djb``); a private key is
32 bytes, clamped on import as libsignal does, so ``serialize()`` returns the clamped form.
X25519 (agreement, and the public key of a private key) is libsodium's, called through PyNaCl's
cffi module directly: PyNaCl's wrappers re-check lengths our key types already guarantee and copy
through a second buffer, about a microsecond on each of the 14 curve operations of a session
setup.
An :class:`IdentityKeyPair` serializes as libsignal's ``IdentityKeyPairStructure`` protobuf
(1: public key, 2: private key).
"""

from __future__ import annotations

import os
from typing import Final

# PyNaCl's compiled cffi module has no stub: its ffi and lib are untyped (Any) here.
from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]
from nacl._sodium import lib as _sodium

from . import protobuf, xeddsa
from .errors import InvalidKeyError

__all__ = [
    "DJB_TYPE",
    "IdentityKey",
    "IdentityKeyPair",
    "KeyPair",
    "PrivateKey",
    "PublicKey",
]

DJB_TYPE: Final = 0x05
"""libsignal's type byte for Curve25519 public keys."""

_KEY_LEN: Final = 32


class PublicKey:
    """A Curve25519 public key (Montgomery ``u``)."""

    __slots__ = ("_edwards", "_edwards_known", "_raw")

    def __init__(self, raw: bytes) -> None:
        """Wrap 32 raw bytes; prefer :meth:`deserialize` for libsignal's 33-byte form."""
        if len(raw) != _KEY_LEN:
            raise InvalidKeyError(f"Curve25519 public key must be 32 bytes, got {len(raw)}")
        self._raw = bytes(raw)
        self._edwards: bytes | None = None
        self._edwards_known = False

    @classmethod
    def deserialize(cls, data: bytes) -> PublicKey:
        """Parse ``0x05 ‖ 32 bytes``; :class:`InvalidKeyError` on a bad type byte or length."""
        if not data:
            raise InvalidKeyError("empty public key")
        if data[0] != DJB_TYPE:
            raise InvalidKeyError(f"unknown public key type 0x{data[0]:02x}")
        if len(data) != 1 + _KEY_LEN:
            raise InvalidKeyError(f"bad public key length {len(data)}")
        return cls(data[1:])

    @classmethod
    def from_public_key_bytes(cls, raw: bytes) -> PublicKey:
        """Wrap 32 raw bytes (no type byte)."""
        return cls(raw)

    def serialize(self) -> bytes:
        """``0x05 ‖ 32 bytes``."""
        return b"\x05" + self._raw

    def public_key_bytes(self) -> bytes:
        """The 32 raw bytes."""
        return self._raw

    def verify_signature(self, message: bytes, signature: bytes) -> bool:
        """Check an XEdDSA signature (libsignal's, with the sign bit in ``sig[63]``)."""
        if not self._edwards_known:
            self._edwards = xeddsa.edwards_encoding(self._raw)
            self._edwards_known = True
        return xeddsa.verify(self._edwards, message, signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __lt__(self, other: PublicKey) -> bool:
        return self._raw < other._raw

    def __repr__(self) -> str:
        return f"PublicKey({self._raw.hex()})"


def _clamp(raw: bytes) -> bytes:
    key = bytearray(raw)
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return bytes(key)


class PrivateKey:
    """A Curve25519 private key (clamped scalar)."""

    __slots__ = ("_public", "_raw", "_signing")

    def __init__(self, raw: bytes) -> None:
        """Wrap 32 bytes, clamping them; prefer :meth:`generate` / :meth:`deserialize`."""
        if len(raw) != _KEY_LEN:
            raise InvalidKeyError(f"Curve25519 private key must be 32 bytes, got {len(raw)}")
        self._raw = _clamp(raw)
        self._public: PublicKey | None = None
        self._signing: tuple[bytes, bytes] | None = None  # (a mod L, a·B), for XEdDSA

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh random key."""
        return cls(os.urandom(_KEY_LEN))

    @classmethod
    def deserialize(cls, data: bytes) -> PrivateKey:
        """Parse 32 bytes (clamped on import)."""
        return cls(data)

    def serialize(self) -> bytes:
        """The 32 clamped bytes. Secret: never log them."""
        return self._raw

    def public_key(self) -> PublicKey:
        """The matching public key (computed on first use, with libsodium's fixed-base
        multiplication)."""
        if self._public is None:
            out = _ffi.new("unsigned char[32]")
            if _sodium.crypto_scalarmult_base(out, self._raw) != 0:
                raise InvalidKeyError("X25519 public key derivation failed")
            self._public = PublicKey(_ffi.buffer(out)[:])
        return self._public

    def calculate_agreement(self, other: PublicKey) -> bytes:
        """X25519 with ``other``; 32 bytes. :class:`InvalidKeyError` for a low-order point."""
        their = other.public_key_bytes()
        if len(their) != _KEY_LEN:  # libsodium reads exactly 32 bytes
            raise InvalidKeyError("Curve25519 public key must be 32 bytes")
        out = _ffi.new("unsigned char[32]")
        if _sodium.crypto_scalarmult(out, self._raw, their) != 0:  # an all-zero shared secret
            raise InvalidKeyError("X25519 agreement with a low-order point")
        shared: bytes = _ffi.buffer(out)[:]
        return shared

    def calculate_signature(self, message: bytes) -> bytes:
        """An XEdDSA signature (64 bytes) that libsignal's ``verify_signature`` accepts."""
        signing = self._signing
        if signing is None:
            scalar = xeddsa.signing_scalar(self._raw)
            signing = self._signing = (scalar, xeddsa.edwards_public_key(self._raw))
        return xeddsa.sign_with_scalar(self._raw, signing[0], signing[1], message)

    def __repr__(self) -> str:
        return "PrivateKey(<secret>)"


class KeyPair:
    """A Curve25519 key pair."""

    __slots__ = ("private_key", "public_key")

    def __init__(self, private_key: PrivateKey, public_key: PublicKey | None = None) -> None:
        """Pair ``private_key`` with ``public_key`` (derived when omitted)."""
        self.private_key = private_key
        self.public_key = public_key if public_key is not None else private_key.public_key()

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random key pair."""
        return cls(PrivateKey.generate())

    def calculate_agreement(self, other: PublicKey) -> bytes:
        """X25519 of this pair's private key with ``other``."""
        return self.private_key.calculate_agreement(other)

    def calculate_signature(self, message: bytes) -> bytes:
        """XEdDSA signature with this pair's private key."""
        return self.private_key.calculate_signature(message)


class IdentityKey:
    """A long-term identity public key (a :class:`PublicKey`, serialized the same way)."""

    __slots__ = ("public_key",)

    def __init__(self, public_key: PublicKey) -> None:
        self.public_key = public_key

    @classmethod
    def deserialize(cls, data: bytes) -> IdentityKey:
        """Parse ``0x05 ‖ 32 bytes``."""
        return cls(PublicKey.deserialize(data))

    def serialize(self) -> bytes:
        """``0x05 ‖ 32 bytes``."""
        return self.public_key.serialize()

    def verify_signature(self, message: bytes, signature: bytes) -> bool:
        """Check an XEdDSA signature by this identity."""
        return self.public_key.verify_signature(message, signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityKey) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"IdentityKey({self.public_key.public_key_bytes().hex()})"


class IdentityKeyPair:
    """A long-term identity key pair."""

    __slots__ = ("identity_key", "private_key")

    def __init__(self, identity_key: IdentityKey, private_key: PrivateKey) -> None:
        self.identity_key = identity_key
        self.private_key = private_key

    @classmethod
    def generate(cls) -> IdentityKeyPair:
        """A fresh random identity."""
        private_key = PrivateKey.generate()
        return cls(IdentityKey(private_key.public_key()), private_key)

    @property
    def public_key(self) -> PublicKey:
        """The identity's public key."""
        return self.identity_key.public_key

    def calculate_signature(self, message: bytes) -> bytes:
        """XEdDSA signature with the identity private key."""
        return self.private_key.calculate_signature(message)

    def serialize(self) -> bytes:
        """libsignal's ``IdentityKeyPairStructure``: 1: public key (33 bytes), 2: private key."""
        return protobuf.encode(
            [(1, self.identity_key.serialize()), (2, self.private_key.serialize())]
        )

    @classmethod
    def deserialize(cls, data: bytes) -> IdentityKeyPair:
        """Parse :meth:`serialize`'s output; :class:`InvalidKeyError` if malformed."""
        try:
            fields = protobuf.decode(data)
            public = IdentityKey.deserialize(fields.required_bytes(1))
            private = PrivateKey.deserialize(fields.required_bytes(2))
        except InvalidKeyError:
            raise
        except Exception as exc:
            raise InvalidKeyError("malformed identity key pair") from exc
        if private.public_key() != public.public_key:
            raise InvalidKeyError("identity key pair halves do not match")
        return cls(public, private)
