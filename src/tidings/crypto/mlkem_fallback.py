"""ML-KEM-1024 in pure Python, for builds whose OpenSSL has no ML-KEM (Android today).

Built on ``kyber-py`` (pinned, pure Python, MIT/Apache-2.0): its FIPS 203 ``K-PKE`` and hash
functions, driven here by the three ML-KEM algorithms so that the choices that matter to a peer
are ours and visible: key generation from the 64-byte seed ``d ‖ z`` (FIPS 203 §7.1, what
OpenSSL's ``from_seed_bytes`` takes), the encapsulation-key modulus check, and decapsulation's
implicit rejection, whose comparison of the re-encrypted ciphertext uses
:func:`hmac.compare_digest` and whose final selection is branch-free.

Byte-identical to OpenSSL's ML-KEM-1024 for the same seed and ciphertext (proven by
``tests/unit/crypto/test_kem_backends.py``, including a known-answer vector). Unlike OpenSSL it
is not constant-time: Python integers are not. It is a fallback, not the preferred backend;
``tidings.crypto.kem`` picks OpenSSL whenever ``cryptography`` provides ML-KEM.
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Final

from kyber_py.ml_kem.default_parameters import DEFAULT_PARAMETERS  # type: ignore[import-untyped]
from kyber_py.ml_kem.ml_kem import ML_KEM  # type: ignore[import-untyped]

__all__ = ["FallbackMLKEM1024", "check_encapsulation_key"]

_Q: Final = 3329
_K: Final = 4
EK_LEN: Final = 384 * _K + 32  # 1568
DK_LEN: Final = 768 * _K + 96  # 3168
CT_LEN: Final = 32 * (11 * _K + 5)  # 1568
SEED_LEN: Final = 64


def check_encapsulation_key(ek: bytes) -> None:
    """FIPS 203 §7.2's checks: 1568 bytes, and every 12-bit coefficient below ``q``."""
    if len(ek) != EK_LEN:
        raise ValueError(f"ML-KEM-1024 encapsulation key must be {EK_LEN} bytes")
    t = memoryview(ek)[: 384 * _K]
    for i in range(0, len(t), 3):
        b0, b1, b2 = t[i], t[i + 1], t[i + 2]
        if b0 | (b1 & 0x0F) << 8 >= _Q or b1 >> 4 | b2 << 4 >= _Q:
            raise ValueError("ML-KEM-1024 encapsulation key is not reduced mod q")


class FallbackMLKEM1024:
    """The three ML-KEM-1024 algorithms; keys are plain bytes (``ek``, expanded ``dk``)."""

    name: Final = "kyber-py"

    def __init__(self) -> None:
        # A private instance: kyber-py's module-level objects carry a settable DRBG.
        self._kem: Any = ML_KEM(DEFAULT_PARAMETERS["ML1024"])

    def keygen(self, seed: bytes) -> tuple[bytes, bytes]:
        """``(ek, dk)`` from the 64-byte seed ``d ‖ z`` (ML-KEM.KeyGen_internal)."""
        if len(seed) != SEED_LEN:
            raise ValueError("ML-KEM seed must be 64 bytes")
        ek, dk = self._kem._keygen_internal(seed[:32], seed[32:])
        return bytes(ek), bytes(dk)

    def encapsulate(self, ek: bytes, m: bytes | None = None) -> tuple[bytes, bytes]:
        """``(shared_key, ciphertext)``; ``m`` (32 bytes) is drawn fresh unless given (tests)."""
        check_encapsulation_key(ek)
        if m is None:
            m = os.urandom(32)
        elif len(m) != 32:
            raise ValueError("ML-KEM message must be 32 bytes")
        key, ct = self._kem._encaps_internal(ek, m)
        return bytes(key), bytes(ct)

    def decapsulate(self, dk: bytes, ct: bytes) -> bytes:
        """The shared key, or the implicit-rejection key ``J(z ‖ c)`` for a forged ``ct``."""
        if len(ct) != CT_LEN:
            raise ValueError(f"ML-KEM-1024 ciphertext must be {CT_LEN} bytes")
        if len(dk) != DK_LEN:
            raise ValueError(f"ML-KEM-1024 decapsulation key must be {DK_LEN} bytes")
        kem = self._kem
        dk_pke = dk[: 384 * _K]
        ek_pke = dk[384 * _K : 768 * _K + 32]
        h = dk[768 * _K + 32 : 768 * _K + 64]
        z = dk[768 * _K + 64 :]
        if not hmac.compare_digest(kem._H(ek_pke), h):
            raise ValueError("ML-KEM-1024 decapsulation key fails its hash check")
        m_prime = kem._k_pke_decrypt(dk_pke, ct)
        key_prime, r_prime = kem._G(m_prime + h)
        key_bar = kem._J(z + ct)
        ct_prime = kem._k_pke_encrypt(ek_pke, m_prime, r_prime)
        return _select(key_prime, key_bar, hmac.compare_digest(ct, ct_prime))


def _select(if_true: bytes, if_false: bytes, condition: bool) -> bytes:
    """``if_true`` when ``condition`` else ``if_false``, without a data-dependent branch."""
    mask = -int(condition) & 0xFF
    return bytes(f ^ (mask & (t ^ f)) for t, f in zip(if_true, if_false, strict=True))
