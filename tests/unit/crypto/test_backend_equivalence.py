"""Fast paths against reference implementations: the hashlib-based HMAC/HKDF against the
standard library and ``cryptography``; libsodium X25519 against OpenSSL's."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import InvalidKeyError, PrivateKey, PublicKey
from tidings.crypto.symmetric import HmacKey, hkdf_sha256, hmac_sha256


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_hmac_matches_stdlib(key: bytes, data: bytes) -> None:
    expected = hmac.digest(key, data, hashlib.sha256)
    assert hmac_sha256(key, data) == expected
    assert HmacKey(key).digest(data) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=80),
    st.binary(max_size=40),
    st.integers(min_value=1, max_value=200),
    st.one_of(st.none(), st.just(b""), st.just(bytes(32)), st.binary(max_size=80)),
)
def test_hkdf_matches_cryptography(
    ikm: bytes, info: bytes, length: int, salt: bytes | None
) -> None:
    expected = HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)
    assert hkdf_sha256(ikm, info, length, salt) == expected


_P = 2**255 - 19
_ORDER_8 = (
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)
_LOW_ORDER_U = (0, 1, _P - 1, _P, _P + 1, *_ORDER_8, *(_P + u for u in _ORDER_8))


def _openssl_agreement(private: bytes, public: bytes) -> bytes | None:
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError:
        return None


def _our_agreement(private: PrivateKey, public: bytes) -> bytes | None:
    try:
        return private.calculate_agreement(PublicKey(public))
    except InvalidKeyError:
        return None


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_x25519_matches_openssl(seed: bytes, peer: bytes) -> None:
    private = PrivateKey(seed)
    reference = X25519PrivateKey.from_private_bytes(private.serialize())
    assert private.public_key().public_key_bytes() == reference.public_key().public_bytes_raw()
    assert _our_agreement(private, peer) == _openssl_agreement(private.serialize(), peer)


def test_x25519_low_order_points_rejected_like_openssl() -> None:
    private = PrivateKey.generate()
    for u in _LOW_ORDER_U:
        for top_bit in (0, 1 << 255):
            peer = ((u | top_bit) % (1 << 256)).to_bytes(32, "little")
            ours = _our_agreement(private, peer)
            assert ours == _openssl_agreement(private.serialize(), peer)
            if u < _P:  # canonical low-order u, top bit ignored
                assert ours is None
