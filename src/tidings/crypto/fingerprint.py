"""Safety numbers: libsignal-compatible numeric and scannable fingerprints.

Each side's fingerprint is ``SHA-512`` iterated ``iterations`` times (5,200 in Signal's apps):
``h = SHA-512(0x0000 ‖ key ‖ stable id ‖ key)``, then ``h = SHA-512(h ‖ key)``, where ``key`` is
the identity key serialized with its ``0x05`` type byte and the stable identifier is given as
bytes (an ACI's 16 bytes in version 2, an E.164 string's UTF-8 in version 1).

* Displayable: the first 30 bytes as six 5-byte big-endian numbers, each ``mod 100000`` and
  zero-padded to 5 digits; the two 30-digit halves are joined smaller first, so both sides show
  the same 60 digits.
* Scannable: the protobuf ``CombinedFingerprints {1: version, 2: {1: local[0:32]},
  3: {1: remote[0:32]}}`` — what a QR code carries. :meth:`ScannableFingerprint.compare` checks a
  scanned one against ours (their local must be our remote and vice versa).

The numbers and bytes equal libsignal's for the same inputs; the interop suite proves it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from . import protobuf
from .errors import InvalidMessageError, SignalProtocolError
from .keys import IdentityKey, PublicKey

__all__ = [
    "DEFAULT_ITERATIONS",
    "FINGERPRINT_VERSION",
    "DisplayableFingerprint",
    "Fingerprint",
    "FingerprintError",
    "FingerprintParsingError",
    "FingerprintVersionMismatchError",
    "NumericFingerprintGenerator",
    "ScannableFingerprint",
]

DEFAULT_ITERATIONS = 5200
"""The iteration count Signal's apps use."""

FINGERPRINT_VERSION = 2
"""Scannable fingerprint version for stable identifiers that are service ids (ACI bytes)."""

_MAX_ITERATIONS = 1_000_000
_HASH_VERSION = b"\x00\x00"


class FingerprintError(SignalProtocolError):
    """Base class of the fingerprint errors."""


class FingerprintVersionMismatchError(FingerprintError):
    """A scanned fingerprint has another version than ours."""

    def __init__(self, theirs: int, ours: int) -> None:
        super().__init__(f"fingerprint version mismatch: theirs {theirs}, ours {ours}")
        self.theirs = theirs
        self.ours = ours


class FingerprintParsingError(FingerprintError):
    """A scanned fingerprint is not a well-formed ``CombinedFingerprints``."""


def _key_bytes(key: IdentityKey | PublicKey) -> bytes:
    return key.serialize()


def _iterated_hash(iterations: int, stable_id: bytes, key: IdentityKey | PublicKey) -> bytes:
    key_bytes = _key_bytes(key)
    digest = hashlib.sha512(_HASH_VERSION + key_bytes + stable_id + key_bytes).digest()
    for _ in range(1, iterations):
        digest = hashlib.sha512(digest + key_bytes).digest()
    return digest


def _encoded_digits(fingerprint: bytes) -> str:
    if len(fingerprint) < 30:
        raise FingerprintError("fingerprint hash shorter than 30 bytes")
    chunks = (int.from_bytes(fingerprint[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
    return "".join(f"{chunk:05d}" for chunk in chunks)


@dataclass(frozen=True, slots=True)
class DisplayableFingerprint:
    """The 60-digit safety number; ``local`` / ``remote`` are each side's 30 digits."""

    local: str
    remote: str

    @classmethod
    def from_hashes(cls, local: bytes, remote: bytes) -> DisplayableFingerprint:
        """Digits from each side's iterated hash."""
        return cls(_encoded_digits(local), _encoded_digits(remote))

    def display_text(self) -> str:
        """The 60 digits, identical on both sides (the smaller half first)."""
        if self.local < self.remote:
            return self.local + self.remote
        return self.remote + self.local

    def __str__(self) -> str:
        return self.display_text()


def _parse_combined(data: bytes) -> tuple[int | None, bytes | None, bytes | None]:
    try:
        fields = protobuf.decode(bytes(data))
        version = fields.optional_uint32(1)
        local_raw = fields.optional_bytes(2)
        remote_raw = fields.optional_bytes(3)
        local = None if local_raw is None else protobuf.decode(local_raw).optional_bytes(1)
        remote = None if remote_raw is None else protobuf.decode(remote_raw).optional_bytes(1)
    except InvalidMessageError as exc:
        raise FingerprintParsingError("malformed scannable fingerprint") from exc
    return version, local, remote


@dataclass(frozen=True, slots=True)
class ScannableFingerprint:
    """What a QR code carries: version and the first 32 bytes of each side's hash."""

    version: int
    local_fingerprint: bytes = field(repr=False)
    remote_fingerprint: bytes = field(repr=False)

    @classmethod
    def from_hashes(cls, version: int, local: bytes, remote: bytes) -> ScannableFingerprint:
        """From each side's iterated hash (truncated to 32 bytes)."""
        return cls(version, local[:32], remote[:32])

    def serialize(self) -> bytes:
        """The ``CombinedFingerprints`` protobuf."""
        return protobuf.encode(
            [
                (1, self.version),
                (2, protobuf.encode([(1, self.local_fingerprint)])),
                (3, protobuf.encode([(1, self.remote_fingerprint)])),
            ]
        )

    @classmethod
    def deserialize(cls, data: bytes) -> ScannableFingerprint:
        """Parse a ``CombinedFingerprints``; :class:`FingerprintParsingError` if incomplete."""
        version, local, remote = _parse_combined(data)
        if version is None:
            raise FingerprintParsingError("missing version")
        if local is None or remote is None:
            raise FingerprintParsingError("missing fingerprint")
        return cls(version, local, remote)

    def compare(self, combined: bytes) -> bool:
        """Whether a scanned ``combined`` fingerprint (the other side's) matches ours.

        :class:`FingerprintVersionMismatchError` if its version differs from ours;
        :class:`FingerprintParsingError` if it is malformed.
        """
        version, theirs_local, theirs_remote = _parse_combined(combined)
        their_version = 0 if version is None else version
        if their_version != self.version:
            raise FingerprintVersionMismatchError(their_version, self.version)
        if theirs_local is None or theirs_remote is None:
            raise FingerprintParsingError("missing their fingerprint")
        same_1 = hmac.compare_digest(theirs_local, self.remote_fingerprint)
        same_2 = hmac.compare_digest(theirs_remote, self.local_fingerprint)
        return same_1 and same_2


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A safety number in both forms."""

    display: DisplayableFingerprint
    scannable: ScannableFingerprint

    @classmethod
    def create(
        cls,
        version: int,
        iterations: int,
        local_id: bytes,
        local_key: IdentityKey | PublicKey,
        remote_id: bytes,
        remote_key: IdentityKey | PublicKey,
    ) -> Fingerprint:
        """Compute the fingerprint of ``local`` (us) and ``remote`` (them)."""
        if iterations <= 1 or iterations > _MAX_ITERATIONS:
            raise FingerprintError(f"invalid fingerprint iteration count {iterations}")
        local = _iterated_hash(iterations, bytes(local_id), local_key)
        remote = _iterated_hash(iterations, bytes(remote_id), remote_key)
        return cls(
            DisplayableFingerprint.from_hashes(local, remote),
            ScannableFingerprint.from_hashes(version, local, remote),
        )

    def display_string(self) -> str:
        """The 60-digit safety number."""
        return self.display.display_text()


class NumericFingerprintGenerator:
    """Makes :class:`Fingerprint` objects with a fixed iteration count."""

    __slots__ = ("iterations",)

    def __init__(self, iterations: int = DEFAULT_ITERATIONS) -> None:
        if iterations <= 1 or iterations > _MAX_ITERATIONS:
            raise FingerprintError(f"invalid fingerprint iteration count {iterations}")
        self.iterations = iterations

    def create_for(
        self,
        version: int,
        local_id: bytes,
        local_key: IdentityKey | PublicKey,
        remote_id: bytes,
        remote_key: IdentityKey | PublicKey,
    ) -> Fingerprint:
        """The fingerprint between us (``local``) and them (``remote``)."""
        return Fingerprint.create(
            version, self.iterations, local_id, local_key, remote_id, remote_key
        )
