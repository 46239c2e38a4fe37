"""What the C libraries under :mod:`tidings.crypto` must provide, checked at import.

XEdDSA needs libsodium's Ed25519 arithmetic with arbitrary (unclamped) scalars:
``crypto_core_ed25519_scalar_*`` and ``crypto_scalarmult_ed25519_base_noclamp``. PyNaCl binds
them from 1.4 on, libsodium has them from 1.0.18 on, and a libsodium built ``--enable-minimal``
leaves them out. python-for-android's stock recipes (PyNaCl 1.3.0, libsodium 1.0.16) lack them;
the project's local recipes (``android/recipes``) ship PyNaCl 1.6.2 on libsodium 1.0.20. Without
them the package refuses to import with :class:`ImportError` naming the versions, rather than
failing later on the first signature. There is no pure-Python fallback: signing handles a
secret scalar, and Python integers are not constant-time.

ML-KEM's two backends are chosen by :mod:`.kem` itself; :func:`report` lists what runs.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SODIUM_REQUIREMENT", "check_sodium", "report"]

SODIUM_REQUIREMENT: Final = (
    "tidings.crypto needs libsodium's Ed25519 no-clamp functions (crypto_core_ed25519_scalar_*, "
    "crypto_scalarmult_ed25519_base_noclamp) for XEdDSA: PyNaCl >= 1.4 built on a full "
    "(not --enable-minimal) libsodium >= 1.0.18"
)
_NEEDED: Final = (
    "crypto_core_ed25519_scalar_add",
    "crypto_core_ed25519_scalar_mul",
    "crypto_core_ed25519_scalar_reduce",
    "crypto_scalarmult_ed25519_base_noclamp",
    "crypto_sign_open",
)
# 1·B, the Ed25519 base point: proves the function runs, not merely that PyNaCl declares it.
_BASE_POINT: Final = bytes.fromhex(
    "5866666666666666666666666666666666666666666666666666666666666666"
)


def _pynacl_version() -> str:
    try:
        import nacl
    except ImportError:
        return "not installed"
    return str(getattr(nacl, "__version__", "unknown"))


def check_sodium() -> None:
    """Raise :class:`ImportError` naming the needed versions if XEdDSA cannot run here."""
    try:
        from nacl import bindings
    except ImportError as exc:
        raise ImportError(f"{SODIUM_REQUIREMENT}; PyNaCl is not importable") from exc
    found = f"found PyNaCl {_pynacl_version()}"
    missing = [name for name in _NEEDED if not hasattr(bindings, name)]
    if missing:
        raise ImportError(f"{SODIUM_REQUIREMENT}; {found}, which lacks {', '.join(missing)}")
    if not (
        getattr(bindings, "has_crypto_core_ed25519", False)
        and getattr(bindings, "has_crypto_scalarmult_ed25519", False)
    ):
        raise ImportError(f"{SODIUM_REQUIREMENT}; {found} on a minimal libsodium")
    one = (1).to_bytes(32, "little")
    if bindings.crypto_scalarmult_ed25519_base_noclamp(one) != _BASE_POINT:
        raise ImportError(f"{SODIUM_REQUIREMENT}; {found}, whose Ed25519 base point is wrong")


def report() -> dict[str, str]:
    """The versions and backends in use, for diagnostics (``python -m`` checks, bug reports)."""
    import sqlite3

    from . import kem

    try:
        import cryptography

        crypto_version = cryptography.__version__
    except ImportError:  # pragma: no cover - kem's import needs one of the backends anyway
        crypto_version = "not installed"
    return {
        "pynacl": _pynacl_version(),
        "cryptography": crypto_version,
        "mlkem_backend": kem.backend_name(),
        "sqlite": sqlite3.sqlite_version,
    }
