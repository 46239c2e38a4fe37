"""The 1:1 wire messages, ``SignalMessage`` and ``PreKeySignalMessage``, as libsignal lays them out.

A ``SignalMessage`` is ``version byte ‖ protobuf ‖ 8-byte MAC``; the version byte is
``(session version << 4) | 4`` (``0x34`` for v3, ``0x44`` for v4). The protobuf fields are
1 ratchet key (``0x05 ‖ 32``), 2 counter, 3 previous counter, 4 AES-CBC ciphertext; the MAC is
``HMAC-SHA256(mac key, sender identity ‖ receiver identity ‖ version byte ‖ protobuf)[:8]``
with both identities in their 33-byte form. Field 5 (libsignal's post-quantum ratchet, SPQR)
is ignored on receipt and never sent, which makes newer libsignal peers fall back to the plain
Double Ratchet.

A ``PreKeySignalMessage`` is ``version byte ‖ protobuf`` with fields 1 one-time prekey id,
2 base key, 3 identity key, 4 the embedded ``SignalMessage``, 5 registration id, 6 signed
prekey id, 7 Kyber prekey id, 8 Kyber ciphertext; it has no MAC of its own. Fields are written
in field-number order, as libsignal's prost encoder does.
"""

from __future__ import annotations

import hmac
from enum import IntEnum
from typing import Final, Protocol

from . import protobuf
from .errors import (
    InvalidMessageError,
    LegacyCiphertextVersionError,
    UnrecognizedMessageVersionError,
)
from .keys import IdentityKey, PublicKey
from .symmetric import hmac_sha256

__all__ = [
    "CURRENT_VERSION",
    "PRE_KYBER_VERSION",
    "CiphertextMessage",
    "CiphertextMessageType",
    "PreKeySignalMessage",
    "SignalMessage",
    "prekey_header",
]

CURRENT_VERSION: Final = 4
"""Session version of PQXDH sessions, and the low nibble of every version byte."""
PRE_KYBER_VERSION: Final = 3
"""Session version of X3DH sessions (no Kyber prekey)."""
MAC_LENGTH: Final = 8


class CiphertextMessageType(IntEnum):
    """libsignal's ``CiphertextMessageType`` values."""

    WHISPER = 2
    PREKEY = 3
    SENDERKEY = 7
    PLAINTEXT = 8


class CiphertextMessage(Protocol):
    """What ``message_encrypt`` returns: a typed, serialized message."""

    def type(self) -> CiphertextMessageType:
        """The message's :class:`CiphertextMessageType`."""
        ...

    def serialize(self) -> bytes:
        """The bytes to put on the wire."""
        ...


def _version_byte(version: int) -> bytes:
    return bytes((((version & 0xF) << 4) | CURRENT_VERSION,))


def _message_version(data: bytes, min_length: int) -> int:
    """The version in the first byte of a serialized message of at least ``min_length`` bytes."""
    if len(data) < min_length:
        raise InvalidMessageError("ciphertext message too short")
    version = data[0] >> 4
    if version < PRE_KYBER_VERSION:
        raise LegacyCiphertextVersionError(f"legacy ciphertext version {version}")
    if version > CURRENT_VERSION:
        raise UnrecognizedMessageVersionError(f"unrecognized ciphertext version {version}")
    return version


def _compute_mac(
    sender_identity: IdentityKey, receiver_identity: IdentityKey, mac_key: bytes, content: bytes
) -> bytes:
    data = sender_identity.serialize() + receiver_identity.serialize() + content
    return hmac_sha256(mac_key, data)[:MAC_LENGTH]


class SignalMessage:
    """A Double Ratchet message (``CiphertextMessageType.WHISPER``)."""

    __slots__ = (
        "_serialized",
        "ciphertext",
        "counter",
        "message_version",
        "previous_counter",
        "sender_ratchet_key",
    )

    def __init__(
        self,
        message_version: int,
        sender_ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        serialized: bytes,
    ) -> None:
        """Internal: use :meth:`create` or :meth:`deserialize`."""
        self.message_version = message_version
        self.sender_ratchet_key = sender_ratchet_key
        self.counter = counter
        self.previous_counter = previous_counter
        self.ciphertext = ciphertext
        self._serialized = serialized

    @classmethod
    def create(
        cls,
        message_version: int,
        mac_key: bytes,
        sender_ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        sender_identity: IdentityKey,
        receiver_identity: IdentityKey,
    ) -> SignalMessage:
        """Build and MAC a message."""
        content = _version_byte(message_version) + protobuf.encode(
            (
                (1, sender_ratchet_key.serialize()),
                (2, counter),
                (3, previous_counter),
                (4, ciphertext),
            )
        )
        mac = _compute_mac(sender_identity, receiver_identity, mac_key, content)
        return cls(
            message_version,
            sender_ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            content + mac,
        )

    @classmethod
    def deserialize(cls, data: bytes) -> SignalMessage:
        """Parse a serialized message (the MAC is checked later, with the session's keys).

        Raises :class:`InvalidMessageError` (too short, malformed protobuf, missing field),
        :class:`LegacyCiphertextVersionError`, :class:`UnrecognizedMessageVersionError` or
        :class:`~tidings.crypto.errors.InvalidKeyError` (bad ratchet key).
        """
        data = bytes(data)
        version = _message_version(data, MAC_LENGTH + 1)
        fields = protobuf.decode(data[1:-MAC_LENGTH])
        ratchet_key = fields.required_bytes(1)
        counter = fields.optional_uint32(2)
        if counter is None:
            raise InvalidMessageError("missing counter")
        previous_counter = fields.optional_uint32(3) or 0
        ciphertext = fields.required_bytes(4)
        return cls(
            version, PublicKey.deserialize(ratchet_key), counter, previous_counter, ciphertext, data
        )

    def verify_mac(
        self, sender_identity: IdentityKey, receiver_identity: IdentityKey, mac_key: bytes
    ) -> bool:
        """Check the MAC in constant time."""
        data = self._serialized
        expected = _compute_mac(sender_identity, receiver_identity, mac_key, data[:-MAC_LENGTH])
        return hmac.compare_digest(expected, data[-MAC_LENGTH:])

    def type(self) -> CiphertextMessageType:
        """Always ``WHISPER`` (2)."""
        return CiphertextMessageType.WHISPER

    def serialize(self) -> bytes:
        """The wire bytes."""
        return self._serialized

    def body(self) -> bytes:
        """The AES-CBC ciphertext."""
        return self.ciphertext


class PreKeySignalMessage:
    """The first messages of a session, carrying what the recipient needs to start it."""

    __slots__ = (
        "_serialized",
        "base_key",
        "identity_key",
        "kyber_ciphertext",
        "kyber_pre_key_id",
        "message",
        "message_version",
        "pre_key_id",
        "registration_id",
        "signed_pre_key_id",
    )

    def __init__(
        self,
        message_version: int,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        kyber_pre_key_id: int | None,
        kyber_ciphertext: bytes | None,
        base_key: PublicKey,
        identity_key: IdentityKey,
        message: SignalMessage,
        serialized: bytes | None = None,
        header: tuple[bytes, bytes] | None = None,
    ) -> None:
        """Build a message; ``serialized`` is computed unless given (by :meth:`deserialize`).

        ``header`` is :func:`prekey_header` of these same fields, when the caller kept it: a
        session repeats it in every message until the peer answers.
        """
        if (kyber_pre_key_id is None) != (kyber_ciphertext is None):
            raise InvalidMessageError("Kyber prekey id and ciphertext must come together")
        self.message_version = message_version
        self.registration_id = registration_id
        self.pre_key_id = pre_key_id
        self.signed_pre_key_id = signed_pre_key_id
        self.kyber_pre_key_id = kyber_pre_key_id
        self.kyber_ciphertext = kyber_ciphertext
        self.base_key = base_key
        self.identity_key = identity_key
        self.message = message
        if serialized is None:
            before, after = header or prekey_header(
                message_version,
                registration_id,
                pre_key_id,
                signed_pre_key_id,
                kyber_pre_key_id,
                kyber_ciphertext,
                base_key,
                identity_key,
            )
            serialized = before + protobuf.encode(((4, message.serialize()),)) + after
        self._serialized = serialized

    @classmethod
    def deserialize(cls, data: bytes) -> PreKeySignalMessage:
        """Parse a serialized message; errors as :meth:`SignalMessage.deserialize`.

        A v4 message must carry a Kyber prekey id and ciphertext; both or neither may appear.
        """
        data = bytes(data)
        version = _message_version(data, 1)
        fields = protobuf.decode(data[1:])
        base_key = fields.required_bytes(2)
        identity_key = fields.required_bytes(3)
        message = fields.required_bytes(4)
        signed_pre_key_id = fields.optional_uint32(6)
        if signed_pre_key_id is None:
            raise InvalidMessageError("missing signed prekey id")
        kyber_pre_key_id = fields.optional_uint32(7)
        kyber_ciphertext = fields.optional_bytes(8)
        if (kyber_pre_key_id is None) != (kyber_ciphertext is None):
            raise InvalidMessageError("Kyber prekey id and ciphertext must come together")
        if kyber_pre_key_id is None and version > PRE_KYBER_VERSION:
            raise InvalidMessageError("Kyber prekey must be present for this session version")
        return cls(
            version,
            fields.optional_uint32(5) or 0,
            fields.optional_uint32(1),
            signed_pre_key_id,
            kyber_pre_key_id,
            kyber_ciphertext,
            PublicKey.deserialize(base_key),
            IdentityKey.deserialize(identity_key),
            SignalMessage.deserialize(message),
            data,
        )

    def type(self) -> CiphertextMessageType:
        """Always ``PREKEY`` (3)."""
        return CiphertextMessageType.PREKEY

    def serialize(self) -> bytes:
        """The wire bytes."""
        return self._serialized


def prekey_header(
    message_version: int,
    registration_id: int,
    pre_key_id: int | None,
    signed_pre_key_id: int,
    kyber_pre_key_id: int | None,
    kyber_ciphertext: bytes | None,
    base_key: PublicKey,
    identity_key: IdentityKey,
) -> tuple[bytes, bytes]:
    """What a :class:`PreKeySignalMessage` puts around its embedded message (field 4): the
    version byte and fields 1-3, and fields 5-8 (with the 1,568-byte Kyber ciphertext).

    Protobuf fields are written one after the other, so these two parts and field 4 between
    them are exactly the message's encoding in field-number order.
    """
    before = _version_byte(message_version) + protobuf.encode(
        ((1, pre_key_id), (2, base_key.serialize()), (3, identity_key.serialize()))
    )
    after = protobuf.encode(
        (
            (5, registration_id),
            (6, signed_pre_key_id),
            (7, kyber_pre_key_id),
            (8, kyber_ciphertext),
        )
    )
    return before, after
