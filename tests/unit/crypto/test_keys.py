"""Curve25519 keys, XEdDSA and Kyber."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import (
    IdentityKey,
    IdentityKeyPair,
    InvalidKeyError,
    InvalidMessageError,
    KeyPair,
    KyberKeyPair,
    KyberPublicKey,
    KyberSecretKey,
    PrivateKey,
    PublicKey,
    xeddsa,
)
from tidings.crypto.kem import decapsulate, encapsulate, kyber_kdf

# (private key, public key, signature of _KAT_MESSAGE) made by libsignal 0.72.1's
# PrivateKey.calculateSignature; the last byte's top bit is the Edwards sign bit (1, 0, 1, 0).
_KAT_MESSAGE = b"tidings xeddsa known answer"
_LIBSIGNAL_SIGNATURES = [
    (
        "180f49de71879a443468ec660e17895810c25bf95ab02cf0568c90db49e6177b",
        "05272013eec83a42cab779ddfee3fc05a9f3ddd7d65374e3f4c151a5709646b338",
        "a4ccf81e4e877ca2267fca58ada760c68d3c381c39bf504e434936ed7bf39007"
        "bc64fc734294b4e3ef1237c2acd12e5fa3b3a38270f708022bc3f37110b01587",
    ),
    (
        "084354ae2f7a1040f7e7b7cc527820f662beb61c03fa3e479affb047e2b89e5e",
        "054bddc2d02bf44973e4115e59698cf52875f5a2e9cb4a25152f551d4cad79506c",
        "2de68e7443642aed13d1ef11e0f480e925c9d16c55e7355a52eec870e9612e93"
        "27c6a10409585358ad8dd13502f61885d4aadf6a7c64a784fea14324bc272800",
    ),
    (
        "d0c3706d88b7e20d8739bd99722736a4b93f708c18e06bd878d0692d6b04ac41",
        "0598b9cc1e549bd299b21ffb67de20500261e6203c980405fdb5bc7a14313a7578",
        "5ec9145250c25eb0b01988112081425cacff89dcbf6e0758ba836a69333825bb"
        "bb3c6ebe86f534be592e28bddadd63c2413331c1a9052c18e19f80ce32f6a083",
    ),
    (
        "88fa76948cde6ef3dda6aa09c80dae065c1fa8a627c8ed194eb1e09c71fb384c",
        "054b2c80ccc34876ea7ea2ef356cad40521d761bf12f51215d46a4f5d7913fb910",
        "06e5d4d8bb3d4a3b1394231a2de01947101ba1b596187f06e1edf345160eae63"
        "efa0dfbf6182674d49bb0efa8e9e20b8f71622b562035f6f046b025165a12703",
    ),
]


@pytest.mark.parametrize(("private_hex", "public_hex", "signature_hex"), _LIBSIGNAL_SIGNATURES)
def test_libsignal_signatures_verify(private_hex: str, public_hex: str, signature_hex: str) -> None:
    private = PrivateKey.deserialize(bytes.fromhex(private_hex))
    public = PublicKey.deserialize(bytes.fromhex(public_hex))
    signature = bytes.fromhex(signature_hex)
    assert private.public_key() == public
    assert public.verify_signature(_KAT_MESSAGE, signature)
    assert not public.verify_signature(_KAT_MESSAGE + b"!", signature)
    flipped = bytearray(signature)
    flipped[63] ^= 0x80
    assert not public.verify_signature(_KAT_MESSAGE, bytes(flipped))
    # The sign bit we put in our own signatures is the same one libsignal puts there.
    ours = private.calculate_signature(_KAT_MESSAGE)
    assert ours[63] & 0x80 == signature[63] & 0x80
    assert public.verify_signature(_KAT_MESSAGE, ours)


def test_edwards_public_key_matches_ed25519() -> None:
    for _ in range(8):
        seed = os.urandom(32)
        scalar = bytearray(hashlib.sha512(seed).digest()[:32])
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        assert xeddsa.edwards_public_key(bytes(scalar)) == expected


def test_edwards_encoding_is_the_signing_point_without_its_sign() -> None:
    # What a verifier derives from the Montgomery key is the signer's own A = a·B, less the sign
    # bit that travels in sig[63]; the sign-bit variant of the same y must not verify.
    for _ in range(8):
        private = PrivateKey.generate()
        edwards = xeddsa.edwards_public_key(private.serialize())
        public = private.public_key().public_key_bytes()
        assert xeddsa.edwards_encoding(public) == edwards[:31] + bytes((edwards[31] & 0x7F,))
        signature = private.calculate_signature(b"m")
        flipped = signature[:63] + bytes((signature[63] ^ 0x80,))
        assert xeddsa.verify(xeddsa.edwards_encoding(public), b"m", signature)
        assert not xeddsa.verify(xeddsa.edwards_encoding(public), b"m", flipped)
        assert not xeddsa.verify(xeddsa.edwards_encoding(public), b"n", signature)


def test_signature_is_deterministic_given_randomness() -> None:
    private = PrivateKey.generate()
    edwards = xeddsa.edwards_public_key(private.serialize())
    first = xeddsa.sign(private.serialize(), edwards, b"m", bytes(64))
    assert first == xeddsa.sign(private.serialize(), edwards, b"m", bytes(64))
    assert first != xeddsa.sign(private.serialize(), edwards, b"m", b"\x01" * 64)
    assert private.public_key().verify_signature(b"m", first)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300))
def test_sign_verify(message: bytes) -> None:
    pair = KeyPair.generate()
    signature = pair.calculate_signature(message)
    assert len(signature) == 64
    assert pair.public_key.verify_signature(message, signature)
    assert not KeyPair.generate().public_key.verify_signature(message, signature)
    tampered = bytearray(signature)
    tampered[5] ^= 1
    assert not pair.public_key.verify_signature(message, bytes(tampered))


def test_malformed_signatures_are_rejected() -> None:
    pair = KeyPair.generate()
    signature = pair.calculate_signature(b"m")
    assert not pair.public_key.verify_signature(b"m", signature[:63])
    assert not pair.public_key.verify_signature(b"m", b"")
    high_s = bytearray(signature)
    high_s[63] |= 0x60
    assert not pair.public_key.verify_signature(b"m", bytes(high_s))
    # u = p - 1 has no Edwards counterpart
    minus_one = ((1 << 255) - 20).to_bytes(32, "little")
    assert not PublicKey(minus_one).verify_signature(b"m", signature)


def test_agreement() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    assert a.calculate_agreement(b.public_key) == b.calculate_agreement(a.public_key)
    with pytest.raises(InvalidKeyError):
        a.calculate_agreement(PublicKey(bytes(32)))  # low-order point


def test_key_serialization() -> None:
    pair = KeyPair.generate()
    data = pair.public_key.serialize()
    assert len(data) == 33 and data[0] == 0x05
    assert PublicKey.deserialize(data) == pair.public_key
    assert hash(PublicKey.deserialize(data)) == hash(pair.public_key)
    assert pair.public_key.public_key_bytes() == data[1:]
    private = PrivateKey.deserialize(pair.private_key.serialize())
    assert private.public_key() == pair.public_key
    for bad in (b"", b"\x05" + bytes(31), b"\x05" + bytes(33), b"\x06" + bytes(32)):
        with pytest.raises(InvalidKeyError):
            PublicKey.deserialize(bad)
    with pytest.raises(InvalidKeyError):
        PrivateKey.deserialize(bytes(31))
    assert repr(private) == "PrivateKey(<secret>)"


def test_private_key_is_clamped_on_import() -> None:
    raw = b"\xff" * 32
    key = PrivateKey.deserialize(raw)
    assert key.serialize() == b"\xf8" + b"\xff" * 30 + b"\x7f"


def test_identity_key_pair_round_trip() -> None:
    pair = IdentityKeyPair.generate()
    data = pair.serialize()
    again = IdentityKeyPair.deserialize(data)
    assert again.identity_key == pair.identity_key
    assert again.private_key.serialize() == pair.private_key.serialize()
    assert IdentityKey.deserialize(pair.identity_key.serialize()) == pair.identity_key
    assert pair.identity_key.verify_signature(b"m", pair.calculate_signature(b"m"))
    other = IdentityKeyPair.generate()
    with pytest.raises(InvalidKeyError):
        IdentityKeyPair.deserialize(
            IdentityKeyPair(pair.identity_key, other.private_key).serialize()
        )
    with pytest.raises(InvalidKeyError):
        IdentityKeyPair.deserialize(b"\x0a\x05garbage")


def test_kyber_round_trip_and_sizes() -> None:
    pair = KyberKeyPair.generate()
    public = pair.public_key.serialize()
    assert len(public) == 1569 and public[0] == 0x08
    ciphertext, shared = encapsulate(KyberPublicKey.deserialize(public))
    assert len(ciphertext) == 1569 and ciphertext[0] == 0x08 and len(shared) == 32
    secret = KyberSecretKey.deserialize(pair.secret_key.serialize())
    assert decapsulate(secret, ciphertext) == shared
    assert secret.public_key() == pair.public_key
    # implicit rejection: a forged ciphertext gives an unrelated secret, not an error
    forged = bytearray(ciphertext)
    forged[100] ^= 1
    assert decapsulate(secret, bytes(forged)) != shared
    for bad in (ciphertext[:-1], b"\x0a" + ciphertext[1:], b""):
        with pytest.raises(InvalidMessageError):
            decapsulate(secret, bad)
    for bad_key in (public[:-1], b"\x0a" + public[1:], b""):
        with pytest.raises(InvalidKeyError):
            KyberPublicKey.deserialize(bad_key)


def test_kyber_round3_kdf_known_answer() -> None:
    # SHAKE256(K ‖ SHA3-256(c)), 32 bytes; the expected values come from the openssl CLI
    # (openssl dgst -sha3-256 / -shake256 -xoflen 32), independent of this code.
    assert kyber_kdf(bytes(32), b"").hex() == (
        "91ac774ea55db415c1e55ea87e8b12a7120910bdac6b6bc694492c07f3d036b7"
    )
    ciphertext = bytes(range(256)) * 6 + bytes(32)
    assert kyber_kdf(bytes(range(32)), ciphertext).hex() == (
        "d2932716b152692211dd6ef075e375488044f9e74d806652b1bbf4356d16982f"
    )
    assert kyber_kdf(bytes(range(32)), ciphertext) == hashlib.shake_256(
        bytes(range(32)) + hashlib.sha3_256(ciphertext).digest()
    ).digest(32)


def test_kyber_public_key_modulus_check() -> None:
    # coefficients >= q are not a valid (ML-KEM) encapsulation key
    with pytest.raises(InvalidKeyError):
        KyberPublicKey.deserialize(b"\x08" + b"\xff" * 1568)
