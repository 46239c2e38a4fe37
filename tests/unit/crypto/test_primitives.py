"""Known answers for the KDFs, the cipher and the message layouts."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.crypto import (
    IdentityKey,
    IdentityKeyPair,
    InvalidMessageError,
    KeyPair,
    PreKeySignalMessage,
    PublicKey,
    SignalMessage,
)
from tidings.crypto.ratchet import (
    KDF_INFO_V3,
    KDF_INFO_V4,
    derive_initial_keys,
    message_key_seed,
    message_keys,
    next_chain_key,
    root_step,
)
from tidings.crypto.symmetric import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    hkdf_sha256,
    hmac_sha256,
    hmac_sha256_pair,
)


def test_chain_key_known_answer() -> None:
    # The chain-key vector from libsignal's ratchet tests.
    chain_key = bytes.fromhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
    keys = message_keys(message_key_seed(chain_key))
    assert keys.cipher_key.hex() == (
        "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
    )
    assert keys.mac_key.hex() == (
        "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
    )
    assert next_chain_key(chain_key).hex() == (
        "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"
    )
    assert len(keys.iv) == 16


def test_message_keys_layout() -> None:
    seed = bytes(range(32))
    okm = hkdf_sha256(seed, b"WhisperMessageKeys", 80)
    keys = message_keys(seed)
    assert (keys.cipher_key, keys.mac_key, keys.iv) == (okm[:32], okm[32:64], okm[64:80])


def test_hkdf_rfc5869_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
        bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


@pytest.mark.parametrize("length", [1, 16, 32, 33, 48, 64, 65, 80, 96, 255])
@pytest.mark.parametrize("salt", [None, b"", b"s", bytes(range(32)), bytes(range(100))])
def test_hkdf_matches_cryptography(length: int, salt: bytes | None) -> None:
    ikm = bytes(range(7, 7 + 77))
    info = b"WhisperGroup"
    expected = HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)
    assert hkdf_sha256(ikm, info, length, salt) == expected


@pytest.mark.parametrize("key_length", [0, 1, 32, 64, 65, 200])
def test_hmac_matches_the_standard_library(key_length: int) -> None:
    key = bytes(range(key_length % 256)) * (key_length // 256 + 1)
    key = key[:key_length]
    first, second = b"\x01", b"message " * 20
    standard = (
        hmac.digest(key, first, "sha256"),
        hmac.digest(key, second, "sha256"),
    )
    assert hmac_sha256_pair(key, first, second) == standard
    assert (hmac_sha256(key, first), hmac_sha256(key, second)) == standard


def test_initial_and_root_kdf_labels() -> None:
    secret = b"\xff" * 32 + bytes(range(96))
    assert KDF_INFO_V3 == b"WhisperText"
    assert KDF_INFO_V4 == b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
    for version, info in ((3, KDF_INFO_V3), (4, KDF_INFO_V4)):
        okm = hkdf_sha256(secret, info, 64)
        assert derive_initial_keys(secret, version) == (okm[:32], okm[32:])
    ours, theirs = KeyPair.generate(), KeyPair.generate()
    root = bytes(32)
    okm = hkdf_sha256(ours.calculate_agreement(theirs.public_key), b"WhisperRatchet", 64, root)
    assert root_step(root, theirs.public_key, ours.private_key) == (okm[:32], okm[32:])


def test_aes_cbc_nist_vector() -> None:
    # NIST SP 800-38A F.2.5, first block
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    ciphertext = aes_256_cbc_encrypt(plaintext, key, iv)
    assert ciphertext[:16].hex() == "f58c4c04d6e5f1ba779eabfb5f7bfbd6"
    assert len(ciphertext) == 32  # a full block of padding
    assert aes_256_cbc_decrypt(ciphertext, key, iv) == plaintext


def test_aes_cbc_rejects_bad_padding_and_lengths() -> None:
    key, iv = bytes(32), bytes(16)
    good = aes_256_cbc_encrypt(b"hello", key, iv)
    for bad in (b"", good[:-1], good + b"x"):
        with pytest.raises(InvalidMessageError):
            aes_256_cbc_decrypt(bad, key, iv)
    # a last block that decrypts to a 0x00 or 0x11 padding byte
    for pad in (0, 17):
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        forged = encryptor.update(bytes(15) + bytes((pad,))) + encryptor.finalize()
        with pytest.raises(InvalidMessageError):
            aes_256_cbc_decrypt(forged, key, iv)


def test_signal_message_layout() -> None:
    sender, receiver = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    ratchet = PublicKey(bytes(range(32)))
    mac_key = b"k" * 32
    message = SignalMessage.create(
        4, mac_key, ratchet, 300, 2, b"C" * 16, sender.identity_key, receiver.identity_key
    )
    body = (
        b"\x44"
        + b"\x0a\x21"
        + ratchet.serialize()
        + b"\x10\xac\x02"  # counter 300
        + b"\x18\x02"
        + b"\x22\x10"
        + b"C" * 16
    )
    mac = hmac.new(
        mac_key,
        sender.identity_key.serialize() + receiver.identity_key.serialize() + body,
        hashlib.sha256,
    ).digest()[:8]
    assert message.serialize() == body + mac
    parsed = SignalMessage.deserialize(message.serialize())
    assert (parsed.message_version, parsed.counter, parsed.previous_counter) == (4, 300, 2)
    assert parsed.sender_ratchet_key == ratchet and parsed.body() == b"C" * 16
    assert parsed.verify_mac(sender.identity_key, receiver.identity_key, mac_key)
    assert not parsed.verify_mac(receiver.identity_key, sender.identity_key, mac_key)
    v3 = SignalMessage.create(
        3, mac_key, ratchet, 0, 0, b"", sender.identity_key, receiver.identity_key
    )
    assert v3.serialize()[0] == 0x34


def test_signal_message_ignores_the_pq_ratchet_field() -> None:
    # libsignal 0.83+ may send field 5 (SPQR); it is covered by the MAC and otherwise ignored.
    body = b"\x44\x0a\x21" + b"\x05" + bytes(32) + b"\x10\x01\x22\x00" + b"\x2a\x03abc"
    parsed = SignalMessage.deserialize(body + bytes(8))
    assert parsed.counter == 1 and parsed.previous_counter == 0 and parsed.ciphertext == b""


@pytest.mark.parametrize(
    "body",
    [
        b"\x44\x10\x01\x22\x00",  # no ratchet key
        b"\x44\x0a\x21\x05" + bytes(32) + b"\x22\x00",  # no counter
        b"\x44\x0a\x21\x05" + bytes(32) + b"\x10\x01",  # no ciphertext
    ],
)
def test_signal_message_missing_fields(body: bytes) -> None:
    with pytest.raises(InvalidMessageError):
        SignalMessage.deserialize(body + bytes(8))


def test_prekey_message_layout_and_rules() -> None:
    identity = IdentityKeyPair.generate()
    inner = SignalMessage.create(
        4, b"k" * 32, PublicKey(bytes(32)), 0, 0, b"", identity.identity_key, identity.identity_key
    )
    base = PublicKey(bytes(range(32)))
    message = PreKeySignalMessage(
        4, 1234, 5, 6, 7, b"\x08" + bytes(1568), base, identity.identity_key, inner
    )
    data = message.serialize()
    assert data[0] == 0x44
    # fields in number order: 1 prekey id, 2 base key, 3 identity, 4 message, 5 reg id, ...
    assert data[1:3] == b"\x08\x05" and data[3:5] == b"\x12\x21"
    parsed = PreKeySignalMessage.deserialize(data)
    assert parsed.serialize() == data
    assert (parsed.registration_id, parsed.pre_key_id, parsed.signed_pre_key_id) == (1234, 5, 6)
    assert parsed.kyber_pre_key_id == 7 and parsed.base_key == base
    assert parsed.identity_key == IdentityKey(identity.identity_key.public_key)
    with pytest.raises(InvalidMessageError):  # v4 without Kyber
        PreKeySignalMessage.deserialize(
            PreKeySignalMessage(
                4, 1, None, 6, None, None, base, identity.identity_key, inner
            ).serialize()
        )
    with pytest.raises(InvalidMessageError):  # half a Kyber payload
        PreKeySignalMessage(4, 1, None, 6, 7, None, base, identity.identity_key, inner)
    v3 = PreKeySignalMessage(3, 1, None, 6, None, None, base, identity.identity_key, inner)
    assert PreKeySignalMessage.deserialize(v3.serialize()).pre_key_id is None
