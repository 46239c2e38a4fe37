"""Attachment encryption: round trips, tamper/truncation/digest errors, padding buckets."""

from __future__ import annotations

import hashlib
import math
import os
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto.attachment import (
    IV_SIZE,
    KEY_SIZE,
    MAC_SIZE,
    AttachmentEncryptor,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    generate_key,
    padded_size,
)
from tidings.crypto.errors import (
    InvalidKeyError,
    InvalidMacError,
    InvalidMessageError,
    SignalProtocolError,
)

SIZES = [0, 1, 15, 16, 17, 31, 32, 33, 540, 541, 542, 4096, 65_537, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_many_sizes(size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext, info = encrypt_bytes(plaintext)
    assert info.size == size
    assert len(info.key) == KEY_SIZE
    assert len(ciphertext) == info.ciphertext_size == ciphertext_size(size)
    assert info.digest == hashlib.sha256(ciphertext).digest()
    assert decrypt_bytes(ciphertext, key=info.key, digest=info.digest, size=size) == plaintext


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=600))
def test_round_trip_property_any_chunking(plaintext: bytes, chunk: int) -> None:
    out = BytesIO()
    info = encrypt_stream(BytesIO(plaintext), out, chunk_size=chunk)
    back = BytesIO()
    decrypt_stream(
        BytesIO(out.getvalue()),
        back,
        key=info.key,
        digest=info.digest,
        size=info.size,
        chunk_size=chunk,
    )
    assert back.getvalue() == plaintext


def test_incremental_encryptor_matches_stream_with_same_key_and_iv() -> None:
    key, iv = generate_key(), os.urandom(IV_SIZE)
    data = os.urandom(100_000)
    enc = AttachmentEncryptor(key, iv=iv)
    parts = [enc.update(data[i : i + 777]) for i in range(0, len(data), 777)]
    tail, info = enc.finalize()
    whole = b"".join(parts) + tail
    assert whole[:IV_SIZE] == iv
    assert decrypt_bytes(whole, key=key, digest=info.digest, size=len(data)) == data
    with pytest.raises(ValueError):
        enc.update(b"x")


def test_fresh_key_and_iv_per_file() -> None:
    a, ia = encrypt_bytes(b"same")
    b, ib = encrypt_bytes(b"same")
    assert ia.key != ib.key
    assert a[:IV_SIZE] != b[:IV_SIZE]
    assert a != b


def test_plaintext_marker_never_in_ciphertext() -> None:
    marker = b"SECRET-MARKER-" * 100
    ciphertext, _ = encrypt_bytes(marker)
    assert b"SECRET-MARKER" not in ciphertext


@pytest.mark.parametrize("size", [0, 17, 5000])
def test_tampered_byte_anywhere_is_refused(size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext, info = encrypt_bytes(plaintext)
    positions = {
        0,
        IV_SIZE - 1,
        IV_SIZE,
        len(ciphertext) // 2,
        len(ciphertext) - MAC_SIZE - 1,
        len(ciphertext) - MAC_SIZE,
        len(ciphertext) - 1,
    }
    for pos in sorted(positions):
        bad = bytearray(ciphertext)
        bad[pos] ^= 0x01
        with pytest.raises(InvalidMacError):
            decrypt_bytes(bytes(bad), key=info.key, digest=info.digest, size=size)
        # With the digest recomputed over the tampered bytes, the MAC still catches it.
        forged = hashlib.sha256(bad).digest()
        with pytest.raises(InvalidMacError):
            decrypt_bytes(bytes(bad), key=info.key, digest=forged, size=size)


def test_wrong_digest_is_refused_before_any_output() -> None:
    ciphertext, info = encrypt_bytes(b"hello" * 1000)
    out = BytesIO()
    wrong = bytes(32)
    with pytest.raises(InvalidMacError):
        decrypt_stream(BytesIO(ciphertext), out, key=info.key, digest=wrong, size=info.size)
    assert out.getvalue() == b""


def test_wrong_key_is_refused() -> None:
    ciphertext, info = encrypt_bytes(b"hello")
    with pytest.raises(InvalidMacError):
        decrypt_bytes(ciphertext, key=generate_key(), digest=info.digest, size=info.size)
    with pytest.raises(InvalidKeyError):
        decrypt_bytes(ciphertext, key=b"short", digest=info.digest, size=info.size)
    with pytest.raises(InvalidKeyError):
        encrypt_bytes(b"x", key=b"\x00" * 32)


@pytest.mark.parametrize("cut", [1, 15, 16, 32, 100, MAC_SIZE + 1])
def test_truncated_ciphertext_is_refused(cut: int) -> None:
    ciphertext, info = encrypt_bytes(os.urandom(3000))
    with pytest.raises(SignalProtocolError):
        decrypt_bytes(ciphertext[:-cut], key=info.key, digest=info.digest, size=info.size)
    with pytest.raises(InvalidMessageError):
        decrypt_bytes(b"", key=info.key, digest=info.digest, size=info.size)


def test_size_larger_than_ciphertext_is_refused() -> None:
    ciphertext, info = encrypt_bytes(b"abc")
    with pytest.raises(InvalidMessageError):
        decrypt_bytes(ciphertext, key=info.key, digest=info.digest, size=10_000)


def test_stated_size_truncates_the_zero_padding() -> None:
    ciphertext, info = encrypt_bytes(b"abcdef")
    assert decrypt_bytes(ciphertext, key=info.key, digest=info.digest, size=3) == b"abc"


def _signal_bucket(size: int) -> int:
    return max(541, math.floor(1.05 ** math.ceil(math.log(size) / math.log(1.05))))


@pytest.mark.parametrize("size", [2, 100, 541, 542, 1000, 10_000, 123_456, 10**6, 10**8])
def test_padding_buckets_follow_signal(size: int) -> None:
    assert padded_size(size) == _signal_bucket(size)
    assert padded_size(size) >= size


def test_padding_buckets_are_coarse() -> None:
    assert padded_size(0) == padded_size(1) == padded_size(541) == 541
    sizes = range(100_000, 200_000, 7)
    buckets = {padded_size(s) for s in sizes}
    assert len(buckets) < 20  # 100k distinct sizes collapse to a handful of lengths
    for s in (1000, 50_000, 10**7):
        assert padded_size(s) <= s * 1.05 + 1
    # ciphertext lengths are equal inside a bucket
    assert ciphertext_size(100_001) == ciphertext_size(padded_size(100_001))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**34))
def test_padded_size_never_below_size(size: int) -> None:
    assert padded_size(size) >= size
    assert (ciphertext_size(size) - IV_SIZE - MAC_SIZE) % 16 == 0
