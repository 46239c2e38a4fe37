"""Unit tests of safety numbers (tidings.crypto.fingerprint).

The expected values were produced by libsignal-client 0.90.0 through tests/interop/peer.mjs
for the keys and identifiers below (iterations 5200).
"""

from __future__ import annotations

import pytest

from tidings.crypto import protobuf
from tidings.crypto.fingerprint import (
    DEFAULT_ITERATIONS,
    DisplayableFingerprint,
    Fingerprint,
    FingerprintError,
    FingerprintParsingError,
    FingerprintVersionMismatchError,
    NumericFingerprintGenerator,
    ScannableFingerprint,
)
from tidings.crypto.keys import IdentityKey, IdentityKeyPair

ALICE_KEY = bytes.fromhex("05303ebabfbe7c188a26c220b34be09b280a574f5b40d152a674877213e5f9b57f")
BOB_KEY = bytes.fromhex("053ca1eb1b9021872e824108da49cccc7dbc8f48a2cbc5fc155d6a8622f8efdb6a")
ALICE_ACI = bytes.fromhex("9d0652a3dcc34d11975f74d61598733f")
BOB_ACI = bytes.fromhex("796abedb2cb54fe8b31f6e4b9d9b2cb3")
DISPLAY_V2 = "257529597624759326024620574227661630683852223488788649494112"
ALICE_SCANNABLE_V2 = bytes.fromhex(
    "080212220a20dd2f5bebf8b3e7dd73c80f7210fa773e2ab2ca3a0bbe55fb5d74649330d343b01a220a20c438"
    "f675f35bb9c9627630a07e26bfe886d0e1aefda1fc35be1f6e497560a70d"
)
DISPLAY_V1 = "115379448266840925173368575278527094390487028117461972194082"
ALICE_SCANNABLE_V1 = bytes.fromhex(
    "080112220a2034e90f93919890c58bd2e1c14502386ab0ca7885b449151cd5e35e9c430ec1a41a220a2001b8"
    "39a48525a402e840116abf9f1413413291a2456e4d8da9fe0961bf42c1a7"
)

ALICE = IdentityKey.deserialize(ALICE_KEY)
BOB = IdentityKey.deserialize(BOB_KEY)


def _swap(scannable: bytes) -> bytes:
    fields = protobuf.decode(scannable)
    return protobuf.encode(
        [(1, fields.required_uint(1)), (2, fields.required_bytes(3)), (3, fields.required_bytes(2))]
    )


def test_version_2_matches_libsignal() -> None:
    generator = NumericFingerprintGenerator()
    assert generator.iterations == DEFAULT_ITERATIONS == 5200
    alice = generator.create_for(2, ALICE_ACI, ALICE, BOB_ACI, BOB)
    bob = generator.create_for(2, BOB_ACI, BOB, ALICE_ACI, ALICE)
    assert alice.display_string() == bob.display_string() == DISPLAY_V2
    assert str(alice.display) == DISPLAY_V2
    assert alice.scannable.serialize() == ALICE_SCANNABLE_V2
    assert bob.scannable.serialize() == _swap(ALICE_SCANNABLE_V2)


def test_version_1_with_phone_numbers_matches_libsignal() -> None:
    alice = Fingerprint.create(1, 5200, b"+14155550100", ALICE, b"+14155550111", BOB)
    assert alice.display_string() == DISPLAY_V1
    assert alice.scannable.serialize() == ALICE_SCANNABLE_V1


def test_public_keys_work_like_identity_keys() -> None:
    alice = Fingerprint.create(2, 5200, ALICE_ACI, ALICE.public_key, BOB_ACI, BOB.public_key)
    assert alice.display_string() == DISPLAY_V2


def test_compare_scanned_fingerprints() -> None:
    alice = NumericFingerprintGenerator().create_for(2, ALICE_ACI, ALICE, BOB_ACI, BOB)
    bob = NumericFingerprintGenerator().create_for(2, BOB_ACI, BOB, ALICE_ACI, ALICE)
    assert alice.scannable.compare(bob.scannable.serialize())
    assert bob.scannable.compare(alice.scannable.serialize())
    # Our own code scanned back (e.g. a mirror) does not match.
    assert not alice.scannable.compare(alice.scannable.serialize())
    mallory = IdentityKeyPair.generate().identity_key
    fake = NumericFingerprintGenerator().create_for(2, BOB_ACI, mallory, ALICE_ACI, ALICE)
    assert not alice.scannable.compare(fake.scannable.serialize())
    assert fake.display_string() != alice.display_string()


def test_compare_errors() -> None:
    alice = NumericFingerprintGenerator().create_for(2, ALICE_ACI, ALICE, BOB_ACI, BOB)
    with pytest.raises(FingerprintVersionMismatchError) as info:
        alice.scannable.compare(ALICE_SCANNABLE_V1)
    assert (info.value.theirs, info.value.ours) == (1, 2)
    with pytest.raises(FingerprintVersionMismatchError):
        alice.scannable.compare(b"")  # no version: 0
    with pytest.raises(FingerprintParsingError):
        alice.scannable.compare(b"\xff\xff")
    with pytest.raises(FingerprintParsingError):
        alice.scannable.compare(protobuf.encode([(1, 2)]))
    with pytest.raises(FingerprintParsingError):
        ScannableFingerprint.deserialize(protobuf.encode([(2, b"")]))
    with pytest.raises(FingerprintParsingError):
        ScannableFingerprint.deserialize(protobuf.encode([(1, 2)]))


def test_scannable_round_trip() -> None:
    parsed = ScannableFingerprint.deserialize(ALICE_SCANNABLE_V2)
    assert parsed.version == 2
    assert len(parsed.local_fingerprint) == len(parsed.remote_fingerprint) == 32
    assert parsed.serialize() == ALICE_SCANNABLE_V2


def test_display_formatting() -> None:
    # Six 5-byte big-endian chunks mod 100000, zero-padded; smaller half first.
    low = bytes(30)
    high = b"\xff" * 30
    shown = DisplayableFingerprint.from_hashes(high, low)
    assert shown.local == f"{(2**40 - 1) % 100000:05d}" * 6
    assert shown.remote == "00000" * 6
    assert shown.display_text() == "0" * 30 + shown.local
    with pytest.raises(FingerprintError):
        DisplayableFingerprint.from_hashes(bytes(29), low)


@pytest.mark.parametrize("iterations", [0, 1, 1_000_001])
def test_invalid_iterations(iterations: int) -> None:
    with pytest.raises(FingerprintError):
        NumericFingerprintGenerator(iterations)
    with pytest.raises(FingerprintError):
        Fingerprint.create(2, iterations, b"a", ALICE, b"b", BOB)
