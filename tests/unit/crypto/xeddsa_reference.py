"""Pure-Python XEdDSA signing, kept only as a test reference for :mod:`tidings.crypto.xeddsa`.

This is the arithmetic the library used before it moved to libsodium: Edwards points in
extended coordinates, a fixed-base comb over 64 x 16 precomputed multiples of the base point,
and the libsignal nonce ``SHA-512(0xFE ‖ 0xFF * 31 ‖ a ‖ message ‖ Z) mod L``. Given the same
64 random bytes ``Z``, :func:`sign` must produce exactly the bytes the library produces.
Slow (~0.3 ms per signature) and not constant-time: never use it outside tests.
"""

from __future__ import annotations

import functools
import hashlib

P = (1 << 255) - 19
L = (1 << 252) + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, P - 2, P) % P
_D2 = 2 * _D % P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_HASH1_PREFIX = b"\xfe" + b"\xff" * 31

_Point = tuple[int, int, int, int]
_Precomp = tuple[int, int, int]


def _add(p1: _Point, p2: _Point) -> _Point:
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * _D2 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _precomp(point: _Point) -> _Precomp:
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x = x * zi % P
    y = y * zi % P
    return ((y + x) % P, (y - x) % P, _D2 * x * y % P)


@functools.cache
def _table() -> list[list[_Precomp]]:
    table: list[list[_Precomp]] = []
    base: _Point = (_BX, _BY, 1, _BX * _BY % P)
    for _ in range(64):
        row: list[_Precomp] = [(1, 1, 0)]
        acc = base
        for _ in range(15):
            row.append(_precomp(acc))
            acc = _add(acc, base)
        table.append(row)
        base = acc
    return table


def scalar_mult_base(k: int) -> bytes:
    """Encode ``k·B`` (``0 <= k < 2**256``) as a compressed Edwards point."""
    x, y, z, t = 0, 1, 1, 0
    for row in _table():
        ypx, ymx, xy2d = row[k & 15]
        k >>= 4
        a = (y - x) * ymx % P
        b = (y + x) * ypx % P
        c = t * xy2d % P
        d = 2 * z
        e, f, g, h = b - a, d - c, d + c, b + a
        x, y, z, t = e * f % P, g * h % P, f * g % P, e * h
    zi = pow(z, P - 2, P)
    ax = x * zi % P
    ay = y * zi % P
    return (ay | ((ax & 1) << 255)).to_bytes(32, "little")


def edwards_public_key(private_key: bytes) -> bytes:
    return scalar_mult_base(int.from_bytes(private_key, "little") % L)


def sign(private_key: bytes, message: bytes, random: bytes) -> bytes:
    edwards_public = edwards_public_key(private_key)
    a = int.from_bytes(private_key, "little") % L
    digest = hashlib.sha512(_HASH1_PREFIX + private_key + message + random).digest()
    r = int.from_bytes(digest, "little") % L
    cap_r = scalar_mult_base(r)
    h = int.from_bytes(hashlib.sha512(cap_r + edwards_public + message).digest(), "little")
    s = (r + h % L * a) % L
    sig = bytearray(cap_r + s.to_bytes(32, "little"))
    sig[63] |= edwards_public[31] & 0x80
    return bytes(sig)
