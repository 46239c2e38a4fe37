"""Symmetric primitives of the protocol: HMAC-SHA256, HKDF-SHA256 and AES-256-CBC with PKCS#7.

HMAC is built from :mod:`hashlib` SHA-256 (RFC 2104), which for the short inputs of the protocol
is faster than :func:`hmac.digest` (whose per-call setup dominates): :func:`hmac_sha256` hashes
the padded key and the message in one go; :class:`HmacKey` hashes a key's inner and outer pads
once and copies them for each message, for a key used two or more times (HKDF's expansion, the
constant all-zero salt). AES comes from ``cryptography``. Used by the Double Ratchet and by
Sender Keys.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC

from .errors import InvalidMessageError

__all__ = [
    "HmacKey",
    "aes_256_cbc_decrypt",
    "aes_256_cbc_encrypt",
    "constant_time_equal",
    "hkdf_sha256",
    "hmac_sha256",
    "hmac_sha256_pair",
]

_ZERO_SALT = bytes(32)
_BLOCK = 16


_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


class HmacKey:
    """An HMAC-SHA256 key whose pads are hashed once, for several :meth:`digest` calls."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = sha256(key).digest()
        block = key + bytes(64 - len(key))
        self._inner = sha256(block.translate(_INNER_PAD))
        self._outer = sha256(block.translate(_OUTER_PAD))

    def digest(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data``; 32 bytes."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key``; 32 bytes."""
    if len(key) > 64:
        key = sha256(key).digest()
    block = key.ljust(64, b"\x00")
    inner = sha256(block.translate(_INNER_PAD) + data).digest()
    return sha256(block.translate(_OUTER_PAD) + inner).digest()


def hmac_sha256_pair(key: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256 of two messages under one key, the key's pads built once (a chain step:
    the message-key seed and the next chain key)."""
    if len(key) > 64:
        key = sha256(key).digest()
    block = key.ljust(64, b"\x00")
    inner = block.translate(_INNER_PAD)
    outer = block.translate(_OUTER_PAD)
    return (
        sha256(outer + sha256(inner + first).digest()).digest(),
        sha256(outer + sha256(inner + second).digest()).digest(),
    )


_ZERO_SALT_KEY = HmacKey(_ZERO_SALT)


def hkdf_sha256(ikm: bytes, info: bytes, length: int, salt: bytes | None = None) -> bytes:
    """RFC 5869 HKDF-SHA256; an absent salt means 32 zero bytes, as the RFC specifies."""
    # (No comparison of a given salt with zeros: salts such as a root key are secret.)
    prk = _ZERO_SALT_KEY.digest(ikm) if not salt else hmac_sha256(salt, ikm)
    if length <= 32:
        return hmac_sha256(prk, info + b"\x01")[:length]
    # The expansion's HMAC key (the 32-byte PRK) padded once for all its blocks, hashed in one
    # go per block: cheaper than HmacKey's copied states for the two or three blocks we need.
    block = prk + _ZERO_SALT
    inner = block.translate(_INNER_PAD)
    outer = block.translate(_OUTER_PAD)
    if length <= 64:  # every use in the protocol: root and chain keys, sender-key IV and key
        t1 = sha256(outer + sha256(inner + info + b"\x01").digest()).digest()
        t2 = sha256(outer + sha256(inner + t1 + info + b"\x02").digest()).digest()
        return (t1 + t2)[:length]
    blocks: list[bytes] = []
    previous = b""
    for counter in range(1, (length + 31) // 32 + 1):
        digest = sha256(inner + previous + info + bytes((counter,))).digest()
        previous = sha256(outer + digest).digest()
        blocks.append(previous)
    return b"".join(blocks)[:length]


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings without leaking where they differ."""
    return hmac.compare_digest(a, b)


def aes_256_cbc_encrypt(plaintext: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-256-CBC with PKCS#7 padding (always at least one byte of padding)."""
    pad = _BLOCK - len(plaintext) % _BLOCK
    encryptor = Cipher(AES(key), CBC(iv)).encryptor()
    return encryptor.update(plaintext + bytes((pad,)) * pad) + encryptor.finalize()


def aes_256_cbc_decrypt(ciphertext: bytes, key: bytes, iv: bytes) -> bytes:
    """Undo :func:`aes_256_cbc_encrypt`; :class:`InvalidMessageError` on bad length or padding."""
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise InvalidMessageError("ciphertext length is not a positive multiple of 16")
    decryptor = Cipher(AES(key), CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes((pad,)) * pad:
        raise InvalidMessageError("invalid PKCS#7 padding")
    return padded[:-pad]
