"""libsignal's Kyber prekeys: key type 0x08, pre-standard Kyber1024 built on ML-KEM-1024.

Round-3 Kyber1024 and ML-KEM-1024 share key and ciphertext formats and the encryption itself;
they differ in the final shared-secret derivation. So ML-KEM's key ``K`` is post-processed with
Kyber's round-3 KDF, ``SHAKE256(K ‖ SHA3-256(ciphertext), 32)``. (Kyber also hashes the random
coins once more and rejects with a different pseudo-random value; neither is observable by a
peer.) Keys and ciphertexts travel as ``0x08 ‖ 1568 bytes``. Secret keys are stored as their
64-byte ML-KEM seed, our own format.

Two interchangeable ML-KEM-1024 backends, chosen once at import: OpenSSL through
``cryptography`` (>= 47 on OpenSSL >= 3.5; constant-time, preferred) and, where that is missing
(python-for-android's stock ``cryptography`` 46 on OpenSSL 3.3), the pure-Python
:mod:`.mlkem_fallback` over ``kyber-py``. Both give byte-identical keys, ciphertexts and secrets
for the same seed (tests prove it); :func:`backend_name` says which one runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Final, Protocol

from .errors import InvalidKeyError, InvalidMessageError

__all__ = [
    "KYBER1024_TYPE",
    "KyberKeyPair",
    "KyberPublicKey",
    "KyberSecretKey",
    "MLKEMBackend",
    "available_backends",
    "backend_name",
    "decapsulate",
    "encapsulate",
    "kyber_kdf",
    "select_backend",
]

KYBER1024_TYPE: Final = 0x08
"""libsignal's type byte for Kyber1024 keys and ciphertexts."""

PUBLIC_KEY_LEN: Final = 1568
CIPHERTEXT_LEN: Final = 1568
SEED_LEN: Final = 64


def kyber_kdf(key: bytes, raw_ciphertext: bytes) -> bytes:
    """Round-3 Kyber's final step: ``SHAKE256(key ‖ SHA3-256(ciphertext))``, 32 bytes."""
    return hashlib.shake_256(key + hashlib.sha3_256(raw_ciphertext).digest()).digest(32)


class MLKEMBackend(Protocol):
    """ML-KEM-1024 as this module uses it. Handles are backend-specific and opaque."""

    name: str

    def load_public(self, raw: bytes) -> object:
        """A handle for a 1568-byte encapsulation key; ``ValueError`` if malformed."""
        ...

    def load_seed(self, seed: bytes) -> tuple[object, bytes]:
        """``(secret handle, raw public key)`` for a 64-byte seed ``d ‖ z``."""
        ...

    def encapsulate(self, public: object) -> tuple[bytes, bytes]:
        """``(shared key, raw ciphertext)`` to a handle from :meth:`load_public`."""
        ...

    def decapsulate(self, secret: object, raw_ciphertext: bytes) -> bytes:
        """The shared key (or the implicit-rejection key) for a 1568-byte ciphertext."""
        ...


class _OpenSSLBackend:
    """OpenSSL's ML-KEM-1024 through ``cryptography`` (>= 47, OpenSSL >= 3.5)."""

    name = "openssl"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import mlkem

        self._mlkem = mlkem
        # cryptography >= 47 on an OpenSSL without ML-KEM imports but cannot use it: probe.
        mlkem.MLKEM1024PrivateKey.from_seed_bytes(bytes(SEED_LEN))

    def load_public(self, raw: bytes) -> object:
        return self._mlkem.MLKEM1024PublicKey.from_public_bytes(raw)

    def load_seed(self, seed: bytes) -> tuple[object, bytes]:
        key = self._mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed)
        return key, key.public_key().public_bytes_raw()

    def encapsulate(self, public: object) -> tuple[bytes, bytes]:
        assert isinstance(public, self._mlkem.MLKEM1024PublicKey)
        return public.encapsulate()

    def decapsulate(self, secret: object, raw_ciphertext: bytes) -> bytes:
        assert isinstance(secret, self._mlkem.MLKEM1024PrivateKey)
        return secret.decapsulate(raw_ciphertext)


class _PurePythonBackend:
    """:mod:`.mlkem_fallback` (``kyber-py``): handles are the raw ``ek`` and expanded ``dk``."""

    name = "kyber-py"

    def __init__(self) -> None:
        from . import mlkem_fallback

        self._fallback = mlkem_fallback
        self._kem = mlkem_fallback.FallbackMLKEM1024()

    def load_public(self, raw: bytes) -> object:
        self._fallback.check_encapsulation_key(raw)
        return bytes(raw)

    def load_seed(self, seed: bytes) -> tuple[object, bytes]:
        ek, dk = self._kem.keygen(seed)
        return dk, ek

    def encapsulate(self, public: object) -> tuple[bytes, bytes]:
        assert isinstance(public, bytes)
        return self._kem.encapsulate(public)

    def decapsulate(self, secret: object, raw_ciphertext: bytes) -> bytes:
        assert isinstance(secret, bytes)
        return self._kem.decapsulate(secret, raw_ciphertext)


_BACKEND_TYPES: Final[dict[str, Callable[[], MLKEMBackend]]] = {
    "openssl": _OpenSSLBackend,
    "kyber-py": _PurePythonBackend,
}


def _load(name: str) -> MLKEMBackend | None:
    try:
        return _BACKEND_TYPES[name]()
    except Exception:  # ImportError, UnsupportedAlgorithm (no ML-KEM in this OpenSSL), ...
        return None


def available_backends() -> dict[str, MLKEMBackend]:
    """Every backend that loads here, by name, preferred first."""
    loaded = {name: _load(name) for name in _BACKEND_TYPES}
    return {name: backend for name, backend in loaded.items() if backend is not None}


def _first_backend() -> MLKEMBackend:
    for name in _BACKEND_TYPES:
        backend = _load(name)
        if backend is not None:
            return backend
    raise ImportError(
        "tidings.crypto needs ML-KEM-1024: cryptography >= 47 built on OpenSSL >= 3.5, "
        "or the pure-Python fallback kyber-py == 1.2.0; neither is importable"
    )


_backend: MLKEMBackend = _first_backend()


def backend_name() -> str:
    """``"openssl"`` or ``"kyber-py"``: the ML-KEM backend new keys use."""
    return _backend.name


def select_backend(name: str) -> None:
    """Use the named backend for keys made from now on (tests and diagnostics)."""
    global _backend
    backend = _load(name) if name in _BACKEND_TYPES else None
    if backend is None:
        raise ValueError(f"ML-KEM backend {name!r} is not available here")
    _backend = backend


class KyberPublicKey:
    """A Kyber1024 public key."""

    __slots__ = ("_backend", "_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        """Wrap 1568 raw bytes; prefer :meth:`deserialize` for the typed form."""
        if len(raw) != PUBLIC_KEY_LEN:
            raise InvalidKeyError(f"Kyber1024 public key must be 1568 bytes, got {len(raw)}")
        self._backend = _backend
        try:
            self._key = self._backend.load_public(bytes(raw))
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

    __slots__ = ("_backend", "_key", "_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        """Expand a 64-byte seed ``d ‖ z``; prefer :meth:`deserialize` or :meth:`generate`."""
        if len(seed) != SEED_LEN:
            raise InvalidKeyError(f"Kyber1024 secret seed must be 64 bytes, got {len(seed)}")
        self._backend = _backend
        self._seed = bytes(seed)
        self._key, self._public = self._backend.load_seed(self._seed)

    @classmethod
    def generate(cls) -> KyberSecretKey:
        """A fresh random key: ``d`` and ``z`` are 64 random bytes (FIPS 203 ML-KEM.KeyGen)."""
        return cls(os.urandom(SEED_LEN))

    @classmethod
    def deserialize(cls, data: bytes) -> KyberSecretKey:
        """Parse the 64-byte seed written by :meth:`serialize`."""
        return cls(data)

    def serialize(self) -> bytes:
        """The 64-byte seed. Secret: never log it."""
        return self._seed

    def public_key(self) -> KyberPublicKey:
        """The matching public key."""
        return KyberPublicKey(self._public)

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
        secret = KyberSecretKey.generate()
        return cls(secret.public_key(), secret)

    def encapsulate(self) -> tuple[bytes, bytes]:
        """Encapsulate to this pair's public key; see :func:`encapsulate`."""
        return encapsulate(self.public_key)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Decapsulate with this pair's secret key; see :func:`decapsulate`."""
        return decapsulate(self.secret_key, ciphertext)


def encapsulate(public_key: KyberPublicKey) -> tuple[bytes, bytes]:
    """Return ``(ciphertext, shared_secret)``: ``0x08 ‖ 1568 bytes`` and 32 bytes."""
    key, raw_ciphertext = public_key._backend.encapsulate(public_key._key)
    return b"\x08" + raw_ciphertext, kyber_kdf(key, raw_ciphertext)


def decapsulate(secret_key: KyberSecretKey, ciphertext: bytes) -> bytes:
    """The 32-byte secret in ``0x08 ‖ 1568 bytes``; :class:`InvalidMessageError` if malformed.

    A well-formed but forged ciphertext yields a pseudo-random secret (implicit rejection); the
    message MAC then fails.
    """
    if len(ciphertext) != 1 + CIPHERTEXT_LEN or ciphertext[0] != KYBER1024_TYPE:
        raise InvalidMessageError("malformed Kyber1024 ciphertext")
    raw_ciphertext = ciphertext[1:]
    return kyber_kdf(
        secret_key._backend.decapsulate(secret_key._key, raw_ciphertext), raw_ciphertext
    )
