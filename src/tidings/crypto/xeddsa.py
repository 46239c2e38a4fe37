"""XEdDSA signatures over Curve25519 keys, in libsignal's flavour.

A Curve25519 (Montgomery) key pair signs as an Ed25519 key pair: the private scalar ``a`` is
the clamped X25519 private key and ``A = a·B`` its Edwards public point. Unlike the XEdDSA
paper, libsignal does not negate ``a`` to force ``A``'s sign bit to zero; it stores that sign
bit in the top bit of ``sig[63]`` (free because ``s < 2**253``). A verifier maps the Montgomery
``u`` to the Edwards ``y = (u - 1) / (u + 1)``, takes the sign from ``sig[63]``, clears it and
runs a standard (cofactorless) Ed25519 verification.

Both directions use libsodium through PyNaCl. Signing needs a fixed-base scalar multiplication
with an arbitrary scalar, ``crypto_scalarmult_ed25519_base_noclamp`` (constant-time), for
``A = a·B`` (callers cache it) and ``R = r·B``; the nonce is
``r = SHA-512(0xFE ‖ 0xFF * 31 ‖ a ‖ message ‖ Z) mod L`` with ``Z`` 64 fresh random bytes per
signature, as libsignal; ``s = r + SHA-512(R ‖ A ‖ message)·a mod L`` is computed with
libsodium's scalar arithmetic. Verification is libsodium's ``crypto_sign_open``, which accepts
every signature an honest signer (libsignal or this module) produces; like OpenSSL it rejects a
non-canonical ``s >= L``, and beyond libsignal it also rejects a small-order public key or
``R`` (keys that X25519 agreement refuses anyway, and no honest signer produces such an ``R``).
"""

from __future__ import annotations

import functools
import hashlib
import os

from .capabilities import SODIUM_REQUIREMENT, check_sodium

try:
    from nacl.bindings import (
        crypto_core_ed25519_scalar_add,
        crypto_core_ed25519_scalar_mul,
        crypto_core_ed25519_scalar_reduce,
        crypto_scalarmult_ed25519_base_noclamp,
    )
    from nacl.exceptions import RuntimeError as SodiumError
except ImportError as exc:  # PyNaCl < 1.4: a clear message rather than a missing name
    raise ImportError(SODIUM_REQUIREMENT) from exc
# Verification calls libsodium's crypto_sign_open through PyNaCl's cffi module (no stub: untyped
# here), with no output buffer: PyNaCl's wrapper allocates two and copies the message out.
from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]
from nacl._sodium import lib as _sodium

check_sodium()

__all__ = [
    "edwards_encoding",
    "edwards_public_key",
    "montgomery_to_edwards_y",
    "sign",
    "sign_with_scalar",
    "signing_scalar",
    "verify",
]

_P = (1 << 255) - 19
_L = (1 << 252) + 27742317777372353535851937790883648493
_HASH1_PREFIX = b"\xfe" + b"\xff" * 31
_ZERO32 = bytes(32)
_IDENTITY = b"\x01" + bytes(31)  # the encoding of the neutral element 0·B


def _reduce(scalar: bytes) -> bytes:
    """A 32- or 64-byte little-endian integer mod ``L``, as 32 bytes."""
    return crypto_core_ed25519_scalar_reduce(scalar + _ZERO32 if len(scalar) == 32 else scalar)


def _base_mult(scalar: bytes) -> bytes:
    """``k·B`` for a reduced scalar ``k`` (32 bytes), compressed."""
    try:
        return crypto_scalarmult_ed25519_base_noclamp(scalar)
    except SodiumError:
        # libsodium refuses only k = 0 here (k < L); its product is the neutral element. Caught
        # rather than tested beforehand, so that no secret scalar is compared in variable time.
        return _IDENTITY


def signing_scalar(private_key: bytes) -> bytes:
    """``a mod L`` (32 bytes) for a 32-byte private key; secret, like the key."""
    return _reduce(private_key)


def edwards_public_key(private_key: bytes) -> bytes:
    """The compressed Ed25519 point ``a·B`` of a (clamped) 32-byte Curve25519 private key."""
    return _base_mult(_reduce(private_key))


def sign(
    private_key: bytes, edwards_public: bytes, message: bytes, random: bytes | None = None
) -> bytes:
    """Sign ``message`` with a clamped Curve25519 private key; returns 64 bytes.

    ``edwards_public`` is :func:`edwards_public_key` of the same key (callers cache it).
    ``random`` (64 bytes) is only passed by known-answer tests.
    """
    return sign_with_scalar(private_key, _reduce(private_key), edwards_public, message, random)


def sign_with_scalar(
    private_key: bytes,
    scalar: bytes,
    edwards_public: bytes,
    message: bytes,
    random: bytes | None = None,
) -> bytes:
    """:func:`sign` with ``scalar = signing_scalar(private_key)`` cached by the caller."""
    if random is None:
        random = os.urandom(64)
    # The nonce and s are secret: libsodium's constant-time scalar arithmetic. h is public.
    r = crypto_core_ed25519_scalar_reduce(
        hashlib.sha512(_HASH1_PREFIX + private_key + message + random).digest()
    )
    cap_r = _base_mult(r)
    h = int.from_bytes(hashlib.sha512(cap_r + edwards_public + message).digest(), "little")
    s = crypto_core_ed25519_scalar_add(
        r, crypto_core_ed25519_scalar_mul((h % _L).to_bytes(32, "little"), scalar)
    )
    return cap_r + s[:31] + bytes((s[31] | (edwards_public[31] & 0x80),))


def montgomery_to_edwards_y(u_bytes: bytes) -> int | None:
    """Map a Montgomery ``u`` (32 bytes, top bit ignored) to Edwards ``y``; None if ``u = -1``."""
    u = (int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)) % _P
    denominator = (u + 1) % _P
    if denominator == 0:
        return None
    # pow(x, -1, p) (an extended-Euclid inverse) is several times faster than Fermat's
    # x^(p-2) here; u is public, so its variable time leaks nothing.
    return (u - 1) * pow(denominator, -1, _P) % _P


@functools.lru_cache(maxsize=1024)
def edwards_encoding(u_bytes: bytes) -> bytes | None:
    """The Edwards ``y`` of a Montgomery ``u`` as 32 bytes (sign bit clear), what
    :func:`verify` takes; None if ``u = -1``. Cached by key: the inversion costs some 16 µs in
    Python, and the same identity keys come back in every bundle of a peer's devices."""
    y = montgomery_to_edwards_y(u_bytes)
    return None if y is None else y.to_bytes(32, "little")


def verify(edwards: bytes | None, message: bytes, signature: bytes) -> bool:
    """Check an XEdDSA ``signature`` by the key whose :func:`edwards_encoding` is ``edwards``."""
    if edwards is None or len(signature) != 64:
        return False
    last = signature[63]
    if last & 0x60:
        return False  # s >= 2**253 once the sign bit is cleared: never produced by a signer
    if last & 0x80:  # the sign of A's x travels in sig[63]; y < 2**255 leaves its bit free
        edwards = edwards[:31] + bytes((edwards[31] | 0x80,))
        signed = signature[:63] + bytes((last & 0x7F,)) + message
    else:
        signed = signature + message
    result: int = _sodium.crypto_sign_open(_ffi.NULL, _ffi.NULL, signed, len(signed), edwards)
    return result == 0
