"""XEdDSA signatures over Curve25519 keys, in libsignal's flavour.

A Curve25519 (Montgomery) key pair signs as an Ed25519 key pair: the private scalar ``a`` is
the clamped X25519 private key and ``A = a·B`` its Edwards public point. Unlike the XEdDSA
paper, libsignal does not negate ``a`` to force ``A``'s sign bit to zero; it stores that sign
bit in the top bit of ``sig[63]`` (free because ``s < 2**253``). A verifier maps the Montgomery
``u`` to the Edwards ``y = (u - 1) / (u + 1)``, takes the sign from ``sig[63]``, clears it and
runs a standard Ed25519 verification, delegated here to OpenSSL through ``cryptography``.

Signing needs arithmetic with arbitrary scalars, which ``cryptography`` does not expose, so it
is done here with Python integers: a fixed-base comb over a lazily built table of 64 x 16
multiples of the base point (every window is added, including zero digits, so the operation
sequence does not depend on the scalar; Python's big integers are still not constant-time).
The nonce is ``SHA-512(0xFE ‖ 0xFF * 31 ‖ a ‖ message ‖ 64 random bytes) mod L``, as libsignal.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["edwards_public_key", "montgomery_to_edwards_y", "sign", "verify"]

_P = (1 << 255) - 19
_L = (1 << 252) + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_D2 = 2 * _D % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_HASH1_PREFIX = b"\xfe" + b"\xff" * 31

# Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x·y = T/Z.
_Point = tuple[int, int, int, int]
# Precomputed affine form (y + x, y - x, 2·d·x·y) for mixed additions.
_Precomp = tuple[int, int, int]

_table: list[list[_Precomp]] | None = None


def _add(p1: _Point, p2: _Point) -> _Point:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _precomp(point: _Point) -> _Precomp:
    x, y, z, _ = point
    zi = pow(z, _P - 2, _P)
    x = x * zi % _P
    y = y * zi % _P
    return ((y + x) % _P, (y - x) % _P, _D2 * x * y % _P)


def _build_table() -> list[list[_Precomp]]:
    """Row ``i`` holds ``j·16**i·B`` for ``j = 0..15`` (``j = 0`` is the neutral element)."""
    table: list[list[_Precomp]] = []
    base: _Point = (_BX, _BY, 1, _BX * _BY % _P)
    identity: _Precomp = (1, 1, 0)
    for _ in range(64):
        row = [identity]
        acc = base
        for _ in range(15):
            row.append(_precomp(acc))
            acc = _add(acc, base)
        table.append(row)
        base = acc  # 16·base
    return table


def _scalar_mult_base(k: int) -> bytes:
    """Encode ``k·B`` (``0 <= k < 2**256``) as a compressed Edwards point."""
    global _table
    if _table is None:
        _table = _build_table()
    x, y, z, t = 0, 1, 1, 0
    for row in _table:
        ypx, ymx, xy2d = row[k & 15]
        k >>= 4
        a = (y - x) * ymx % _P
        b = (y + x) * ypx % _P
        c = t * xy2d % _P
        d = 2 * z
        e, f, g, h = b - a, d - c, d + c, b + a
        x, y, z, t = e * f % _P, g * h % _P, f * g % _P, e * h
    zi = pow(z, _P - 2, _P)
    ax = x * zi % _P
    ay = y * zi % _P
    return (ay | ((ax & 1) << 255)).to_bytes(32, "little")


def edwards_public_key(private_key: bytes) -> bytes:
    """The compressed Ed25519 point ``a·B`` of a (clamped) 32-byte Curve25519 private key."""
    return _scalar_mult_base(int.from_bytes(private_key, "little") % _L)


def sign(
    private_key: bytes, edwards_public: bytes, message: bytes, random: bytes | None = None
) -> bytes:
    """Sign ``message`` with a clamped Curve25519 private key; returns 64 bytes.

    ``edwards_public`` is :func:`edwards_public_key` of the same key (callers cache it).
    ``random`` (64 bytes) is only passed by known-answer tests.
    """
    if random is None:
        random = os.urandom(64)
    a = int.from_bytes(private_key, "little") % _L
    r = int.from_bytes(
        hashlib.sha512(_HASH1_PREFIX + private_key + message + random).digest(), "little"
    )
    r %= _L
    cap_r = _scalar_mult_base(r)
    h = int.from_bytes(hashlib.sha512(cap_r + edwards_public + message).digest(), "little")
    s = (r + h % _L * a) % _L
    sig = bytearray(cap_r + s.to_bytes(32, "little"))
    sig[63] |= edwards_public[31] & 0x80
    return bytes(sig)


def montgomery_to_edwards_y(u_bytes: bytes) -> int | None:
    """Map a Montgomery ``u`` (32 bytes, top bit ignored) to Edwards ``y``; None if ``u = -1``."""
    u = (int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)) % _P
    denominator = (u + 1) % _P
    if denominator == 0:
        return None
    return (u - 1) * pow(denominator, _P - 2, _P) % _P


def verify(edwards_y: int | None, message: bytes, signature: bytes) -> bool:
    """Check an XEdDSA ``signature`` by the key whose Edwards ``y`` is ``edwards_y``."""
    if edwards_y is None or len(signature) != 64:
        return False
    sign_bit = signature[63] & 0x80
    if signature[63] & 0x60:
        return False  # s >= 2**253 once the sign bit is cleared: never produced by a signer
    a_enc = (edwards_y | (sign_bit << 248)).to_bytes(32, "little")
    try:
        key = Ed25519PublicKey.from_public_bytes(a_enc)
        key.verify(signature[:63] + bytes((signature[63] & 0x7F,)), message)
    except (InvalidSignature, ValueError):
        return False
    return True
