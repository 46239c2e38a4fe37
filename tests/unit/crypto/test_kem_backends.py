"""The two ML-KEM-1024 backends of tidings.crypto.kem are byte-identical.

OpenSSL (cryptography >= 47) and the pure-Python fallback (kyber-py) must agree on everything a
peer or our own storage can see: the public key derived from a 64-byte seed, the shared key
decapsulated from a ciphertext made by the other, the implicit-rejection key for a forged
ciphertext, and which encapsulation keys are malformed. A known-answer vector (C2SP CCTV,
"unlucky sample" ML-KEM-1024, FIPS 203 final) pins the fallback to the standard by itself, so
the file proves something even where only the fallback exists (the Android check's venv).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator

import pytest

from tidings.crypto import kem
from tidings.crypto.kem import (
    KyberKeyPair,
    KyberPublicKey,
    KyberSecretKey,
    MLKEMBackend,
    available_backends,
    backend_name,
    select_backend,
)
from tidings.crypto.mlkem_fallback import FallbackMLKEM1024

BACKENDS = available_backends()
#: Every ordered pair of the backends this machine has: with OpenSSL's ML-KEM both ways across,
#: on a build without it (as in the Android check's pinned venv) the fallback against itself.
PAIRS = [(a, b) for a in BACKENDS for b in BACKENDS]

_SEEDS = [bytes(64), b"\xff" * 64, bytes(range(64)), *(os.urandom(64) for _ in range(5))]

# C2SP/CCTV ML-KEM/unluckysample/ML-KEM-1024.txt: d, z, m and K in full; ek, dk and c by the
# parts that matter (K = G(m ‖ H(ek)) proves ek, and decapsulation back to K proves c).
KAT_D = bytes.fromhex("9526e27d918ae2379c067c81c59eca33fcd7045ea098c6ea6ed7d8aaea511cb6")
KAT_Z = bytes.fromhex("8476013560151d986dc7834dcb57c75f845f8d7ee71558d0955f3f4feb723cf2")
KAT_M = bytes.fromhex("e48f74ad416e99631003ded1478aec62a02c245d88ed7f2fae92aedf13ca03b3")
KAT_K = bytes.fromhex("984b648fda1cc7ff5fb01d89387f1827ffd43f0bd6c12b157b8b6101273a01ee")
KAT_EK_HEAD = "33d75c6cf5cbc85a3388d7b10dc236896c1bd24522f62b7b26792d1d24b8a40b"
KAT_EK_TAIL = "d36fb78550cf6509660f626f879521e3"
KAT_H_EK = "0b3db073d1219b2145b830dca13b466e6afa69b00c86e05b01385ed5af0c4876"
KAT_C_HEAD = "05ebe8bf5036f51c3c961d9ac47b0b93d821170a22db2360c8004814808a871b"
KAT_C_TAIL = "8f7848bd93ff83bd84d16a3e713129e6"


def _pairs() -> list[tuple[str, str]]:
    names = list(BACKENDS)
    return [(a, b) for a in names for b in names]


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a high-level test once per available backend, restoring the default after."""
    before = backend_name()
    select_backend(request.param)
    yield request.param
    select_backend(before)


def test_default_prefers_openssl_when_it_has_mlkem() -> None:
    assert "kyber-py" in BACKENDS
    assert backend_name() == next(iter(BACKENDS))
    if "openssl" in BACKENDS:
        assert backend_name() == "openssl"


def test_falls_back_when_cryptography_lacks_mlkem(monkeypatch: pytest.MonkeyPatch) -> None:
    # cryptography 46 (python-for-android's recipe) has no mlkem module at all.
    import cryptography.hazmat.primitives.asymmetric as asymmetric

    monkeypatch.delattr(asymmetric, "mlkem", raising=False)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.mlkem", None)
    assert kem._first_backend().name == "kyber-py"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="not available"):
        select_backend("liboqs")


@pytest.mark.parametrize("seed", _SEEDS, ids=lambda s: s[:4].hex())
def test_same_public_key_from_seed(seed: bytes) -> None:
    publics = {name: b.load_seed(seed)[1] for name, b in BACKENDS.items()}
    assert len(set(publics.values())) == 1, publics.keys()


@pytest.mark.parametrize(("encapsulator", "decapsulator"), _pairs())
def test_cross_encapsulation(encapsulator: str, decapsulator: str) -> None:
    enc, dec = BACKENDS[encapsulator], BACKENDS[decapsulator]
    for seed in _SEEDS[:4]:
        secret, public = dec.load_seed(seed)
        key, ciphertext = enc.encapsulate(enc.load_public(public))
        assert len(key) == 32
        assert len(ciphertext) == 1568
        assert dec.decapsulate(secret, ciphertext) == key


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_implicit_rejection_is_identical(first: str, second: str) -> None:
    openssl, fallback = BACKENDS[first], BACKENDS[second]
    for seed in _SEEDS[:4]:
        o_secret, public = openssl.load_seed(seed)
        f_secret, _ = fallback.load_seed(seed)
        key, ciphertext = openssl.encapsulate(openssl.load_public(public))
        for forged in (
            bytes([ciphertext[0] ^ 1]) + ciphertext[1:],
            ciphertext[:-1] + bytes([ciphertext[-1] ^ 0x80]),
            os.urandom(1568),
        ):
            rejected = openssl.decapsulate(o_secret, forged)
            assert rejected != key
            assert fallback.decapsulate(f_secret, forged) == rejected


def _unreduced(public: bytes) -> bytes:
    # The first coefficient set to 0xFFF >= q = 3329.
    return b"\xff" + bytes([public[1] | 0x0F]) + public[2:]


@pytest.mark.parametrize("name", list(BACKENDS))
def test_unreduced_encapsulation_key_is_refused(name: str) -> None:
    backend = BACKENDS[name]
    _, public = backend.load_seed(_SEEDS[2])
    with pytest.raises(ValueError):
        backend.load_public(_unreduced(public))
    # and the last coefficient of the last polynomial, to check the decoder's stride
    last = public[:1534] + bytes([public[1534] | 0xF0, 0xFF]) + public[1536:]
    with pytest.raises(ValueError):
        backend.load_public(last)


def test_known_answer_vector() -> None:
    fallback = FallbackMLKEM1024()
    ek, dk = fallback.keygen(KAT_D + KAT_Z)
    assert ek.hex().startswith(KAT_EK_HEAD)
    assert ek.hex().endswith(KAT_EK_TAIL)
    assert hashlib.sha3_256(ek).hexdigest() == KAT_H_EK
    assert dk[-64:] == bytes.fromhex(KAT_H_EK) + KAT_Z
    key, ciphertext = fallback.encapsulate(ek, KAT_M)
    assert key == KAT_K
    assert ciphertext.hex().startswith(KAT_C_HEAD)
    assert ciphertext.hex().endswith(KAT_C_TAIL)
    for backend in BACKENDS.values():
        secret, public = backend.load_seed(KAT_D + KAT_Z)
        assert public == ek
        assert backend.decapsulate(secret, ciphertext) == KAT_K


def test_fallback_checks_its_inputs() -> None:
    fallback = FallbackMLKEM1024()
    ek, dk = fallback.keygen(_SEEDS[0])
    with pytest.raises(ValueError):
        fallback.keygen(bytes(63))
    with pytest.raises(ValueError):
        fallback.encapsulate(ek, bytes(31))
    with pytest.raises(ValueError):
        fallback.decapsulate(dk, bytes(1567))
    with pytest.raises(ValueError):
        fallback.decapsulate(dk[:-1], bytes(1568))
    tampered = dk[:1536] + bytes([dk[1536] ^ 1]) + dk[1537:]  # ek inside dk no longer matches H
    with pytest.raises(ValueError, match="hash check"):
        fallback.decapsulate(tampered, bytes(1568))


def test_high_level_api(backend: str) -> None:
    pair = KyberKeyPair.generate()
    assert pair.secret_key._backend.name == backend
    ciphertext, secret = pair.encapsulate()
    assert ciphertext[0] == 0x08
    assert pair.decapsulate(ciphertext) == secret
    restored = KyberSecretKey.deserialize(pair.secret_key.serialize())
    assert restored.public_key() == pair.public_key
    assert KyberPublicKey.deserialize(pair.public_key.serialize()) == pair.public_key
    with pytest.raises(kem.InvalidKeyError):
        KyberPublicKey(_unreduced(pair.public_key._raw))
    with pytest.raises(kem.InvalidKeyError):
        KyberSecretKey.deserialize(bytes(63))


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_keys_cross_backends_through_the_api(first: str, second: str) -> None:
    default = backend_name()
    select_backend(first)
    try:
        pair = KyberKeyPair.generate()
        select_backend(second)
        seen_by_fallback = KyberSecretKey.deserialize(pair.secret_key.serialize())
        peer_key = KyberPublicKey.deserialize(pair.public_key.serialize())
        assert seen_by_fallback.public_key() == pair.public_key
        ciphertext, secret = kem.encapsulate(peer_key)  # the second backend encapsulates
    finally:
        select_backend(first)
    try:
        assert pair.decapsulate(ciphertext) == secret  # the first decapsulates
    finally:
        select_backend(default)
    ciphertext, secret = pair.encapsulate()
    assert kem.decapsulate(seen_by_fallback, ciphertext) == secret


def test_backend_protocol_is_satisfied() -> None:
    for backend in BACKENDS.values():
        assert isinstance(backend.name, str)
        _check: MLKEMBackend = backend
