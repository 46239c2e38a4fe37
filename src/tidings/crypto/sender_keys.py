"""Sender Keys: libsignal-compatible group messaging.

A sender owns one *sender key* per ``(sender address, distribution id)``: a 31-bit chain id, a
symmetric chain (``seed = HMAC(ck, 0x01)``, ``next = HMAC(ck, 0x02)``) and a Curve25519 signing
key. The sender hands the chain's current state and the signing public key to every member in a
:class:`SenderKeyDistributionMessage` (sent over the pairwise sessions); each group message is
then one :class:`SenderKeyMessage` for all members: AES-256-CBC with PKCS#7 under
``HKDF(seed, info="WhisperGroup", 48) = IV[0:16] ‖ key[16:48]``, signed with XEdDSA over
``version byte ‖ protobuf``, the 64-byte signature appended.

Wire formats, KDF labels, limits (5 states per record, 2,000 stored skipped keys, at most
25,000 iterations skipped in one step) and error behaviour follow libsignal; the interop suite
proves this against ``@signalapp/libsignal-client``.

Records serialize as the protobuf ``SenderKeyRecordStructure`` libsignal stores, plus one field
libsignal ignores (number 15, :data:`SENDER_KEY_RECORD_FORMAT`) naming the format version, so a
record can be read by this library's later versions and, field for field, by libsignal.

Decryption is transactional: the record is written back to the store only after a message has
been authenticated and decrypted; a failed message leaves the stored state untouched.
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from . import protobuf
from .errors import (
    DuplicateMessageError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidSenderKeySessionError,
    InvalidSignatureError,
    InvalidStateError,
    LegacyCiphertextVersionError,
    UnrecognizedMessageVersionError,
)
from .keys import KeyPair, PrivateKey, PublicKey
from .symmetric import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    hkdf_sha256,
    hmac_sha256,
    hmac_sha256_pair,
)

__all__ = [
    "MAX_FORWARD_JUMPS",
    "MAX_MESSAGE_KEYS",
    "MAX_SENDER_KEY_STATES",
    "SENDERKEY_MESSAGE_CURRENT_VERSION",
    "SENDER_KEY_RECORD_FORMAT",
    "AddressLike",
    "InMemorySenderKeyStore",
    "InvalidSenderKeySignatureError",
    "NoSenderKeyStateError",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "SenderKeyState",
    "SenderKeyStore",
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
]

SENDERKEY_MESSAGE_CURRENT_VERSION = 3
MAX_SENDER_KEY_STATES = 5
MAX_MESSAGE_KEYS = 2000
MAX_FORWARD_JUMPS = 25_000
SENDER_KEY_RECORD_FORMAT = 1
"""Format version written into field 15 of a serialized :class:`SenderKeyRecord`."""

_SIGNATURE_LENGTH = 64
_RECORD_FORMAT_FIELD = 15
_RECORD_FORMAT_TRAILER = protobuf.encode([(_RECORD_FORMAT_FIELD, SENDER_KEY_RECORD_FORMAT)])
_MESSAGE_KEY_SEED = b"\x01"
_CHAIN_KEY_SEED = b"\x02"
_GROUP_INFO = b"WhisperGroup"
_ZERO_SALT = bytes(32)
_U32_MAX = 0xFFFFFFFF


class NoSenderKeyStateError(InvalidSenderKeySessionError):
    """No sender key for ``(sender, distribution id)`` or none with the message's chain id.

    libsignal: ``NoSenderKeyState``. ``distribution_id`` names the distribution.
    """

    def __init__(self, distribution_id: uuid.UUID) -> None:
        super().__init__(f"missing sender key state for distribution ID {distribution_id}")
        self.distribution_id = distribution_id


class InvalidSenderKeySignatureError(InvalidMessageError, InvalidSignatureError):
    """A :class:`SenderKeyMessage`'s signature does not verify under the sender's signing key.

    Both an :class:`~tidings.crypto.errors.InvalidMessageError` (the message is rejected as
    invalid) and an :class:`~tidings.crypto.errors.InvalidSignatureError` (libsignal's
    ``SignatureValidationFailed``).
    """


# --------------------------------------------------------------------------------------------
# Key derivation


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac_sha256(key, data)


def _message_key_material(seed: bytes) -> tuple[bytes, bytes]:
    """``(iv, cipher_key)`` from ``HKDF-SHA256(ikm=seed, salt=none, info="WhisperGroup", 48)``."""
    okm = hkdf_sha256(seed, _GROUP_INFO, 48)
    return okm[0:16], okm[16:48]


class _ChainKey(NamedTuple):
    iteration: int
    key: bytes

    def message_seed(self) -> bytes:
        return hmac_sha256(self.key, _MESSAGE_KEY_SEED)

    def next(self) -> _ChainKey:
        if self.iteration >= _U32_MAX:
            raise InvalidStateError("sender chain is too long")
        return _ChainKey(self.iteration + 1, hmac_sha256(self.key, _CHAIN_KEY_SEED))

    def step(self) -> tuple[bytes, _ChainKey]:
        """``(message_seed(), next())`` with the key's HMAC pads built once."""
        if self.iteration >= _U32_MAX:
            raise InvalidStateError("sender chain is too long")
        seed, key = hmac_sha256_pair(self.key, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)
        return seed, _ChainKey(self.iteration + 1, key)


def _aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    return aes_256_cbc_encrypt(plaintext, key, iv)


def _aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    try:
        return aes_256_cbc_decrypt(ciphertext, key, iv)
    except InvalidMessageError:
        raise InvalidMessageError("decryption failed") from None


# --------------------------------------------------------------------------------------------
# Wire messages


def _parse_version(first_byte: int) -> int:
    version = first_byte >> 4
    if version < SENDERKEY_MESSAGE_CURRENT_VERSION:
        raise LegacyCiphertextVersionError(f"legacy sender key message version {version}")
    if version > SENDERKEY_MESSAGE_CURRENT_VERSION:
        raise UnrecognizedMessageVersionError(f"unrecognized sender key message version {version}")
    return version


@functools.lru_cache(maxsize=256)
def _parse_distribution_id(raw: bytes | None) -> uuid.UUID:
    if raw is None or len(raw) != 16:
        raise InvalidMessageError("invalid distribution id")
    return uuid.UUID(bytes=raw)


def _required_uint32(fields: protobuf.Fields, number: int) -> int:
    value = fields.optional_uint32(number)
    if value is None:
        raise InvalidMessageError(f"missing field {number}")
    return value


def _version_byte(message_version: int) -> bytes:
    return bytes((((message_version & 0xF) << 4) | SENDERKEY_MESSAGE_CURRENT_VERSION,))


_MessageParts = tuple[int, uuid.UUID, int, int, bytes]


def _common_message_layout(data: bytes) -> tuple[bytes, int, int, bytes] | None:
    """``(distribution id bytes, chain id, iteration, ciphertext)`` of a serialized message whose
    body is laid out the way :meth:`SenderKeyMessage.create` and libsignal write one (fields 1
    with 16 bytes, 2, 3, 4 in that order, once each); ``None`` for anything else, which the
    general parser then handles. For the inputs it accepts, the result is exactly what the
    general parser gives (a fast path for every group message received).
    """
    end = len(data) - _SIGNATURE_LENGTH
    if end < 25 or data[1] != 0x0A or data[2] != 16 or data[19] != 0x10:
        return None
    try:
        chain_id, pos = protobuf.decode_varint(data, 20)
        if pos >= end or data[pos] != 0x18:
            return None
        iteration, pos = protobuf.decode_varint(data, pos + 1)
        if pos >= end or data[pos] != 0x22:
            return None
        length, pos = protobuf.decode_varint(data, pos + 1)
    except InvalidMessageError:
        return None
    if pos + length != end:
        return None
    return data[3:19], chain_id & _U32_MAX, iteration & _U32_MAX, data[pos:end]


def _parse_message(data: bytes) -> _MessageParts:
    """``(version, distribution id, chain id, iteration, ciphertext)`` of a serialized
    :class:`SenderKeyMessage` (``bytes``); the signature is not checked here."""
    if len(data) < 1 + _SIGNATURE_LENGTH:
        raise InvalidMessageError("sender key message too short")
    version = _parse_version(data[0])
    fast = _common_message_layout(data)
    if fast is None:
        return _parse_message_fields(version, data)
    distribution, chain_id, iteration, ciphertext = fast
    return version, _parse_distribution_id(distribution), chain_id, iteration, ciphertext


def _parse_message_fields(version: int, data: bytes) -> _MessageParts:
    """:func:`_parse_message` through the general protobuf parser."""
    fields = protobuf.decode(data[1 : len(data) - _SIGNATURE_LENGTH])
    distribution_id = _parse_distribution_id(fields.optional_bytes(1))
    chain_id = _required_uint32(fields, 2)
    iteration = _required_uint32(fields, 3)
    return version, distribution_id, chain_id, iteration, fields.required_bytes(4)


def _encode_message_body(
    message_version: int,
    distribution_id: uuid.UUID,
    chain_id: int,
    iteration: int,
    ciphertext: bytes,
) -> bytes:
    """``version byte ‖ protobuf(1: distribution id, 2: chain id, 3: iteration, 4: ciphertext)``,
    the signed part of a :class:`SenderKeyMessage` (what ``protobuf.encode`` writes for these
    four fields, without its generality: this runs for every group message sent)."""
    varint = protobuf.encode_varint
    return b"".join(
        (
            _version_byte(message_version),
            b"\x0a\x10",
            distribution_id.bytes,
            b"\x10",
            _chain_id_varint(chain_id),
            b"\x18",
            varint(iteration),
            b"\x22",
            varint(len(ciphertext)),
            ciphertext,
        )
    )


@dataclass(frozen=True, slots=True)
class SenderKeyMessage:
    """One group message: ``version ‖ protobuf(distribution, chain id, iteration, ciphertext)``
    followed by a 64-byte XEdDSA signature over everything before it."""

    message_version: int
    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    ciphertext: bytes
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        message_version: int,
        distribution_id: uuid.UUID,
        chain_id: int,
        iteration: int,
        ciphertext: bytes,
        signing_key: PrivateKey,
    ) -> SenderKeyMessage:
        """Build and sign a message with the sender's private signing key."""
        body = _encode_message_body(
            message_version, distribution_id, chain_id, iteration, ciphertext
        )
        signature = signing_key.calculate_signature(body)
        return cls(
            SENDERKEY_MESSAGE_CURRENT_VERSION,
            distribution_id,
            chain_id,
            iteration,
            ciphertext,
            body + signature,
        )

    @classmethod
    def deserialize(cls, data: bytes) -> SenderKeyMessage:
        """Parse a serialized message; the signature is checked by :func:`group_decrypt`."""
        data = bytes(data)
        return cls(*_parse_message(data), data)

    def serialize(self) -> bytes:
        """The wire bytes, signature included."""
        return self.serialized

    def verify_signature(self, signing_key: PublicKey) -> bool:
        """Whether the appended signature verifies under ``signing_key``."""
        body = self.serialized[:-_SIGNATURE_LENGTH]
        signature = self.serialized[-_SIGNATURE_LENGTH:]
        return signing_key.verify_signature(body, signature)


@dataclass(frozen=True, slots=True)
class SenderKeyDistributionMessage:
    """A sender key's public part: ``version ‖ protobuf(distribution, chain id, iteration,
    chain key, signing public key)``. Sent to each member over a pairwise session."""

    message_version: int
    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    chain_key: bytes = field(repr=False)
    signing_key: PublicKey
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        message_version: int,
        distribution_id: uuid.UUID,
        chain_id: int,
        iteration: int,
        chain_key: bytes,
        signing_key: PublicKey,
    ) -> SenderKeyDistributionMessage:
        """Build a distribution message from its parts."""
        body = _version_byte(message_version) + protobuf.encode(
            [
                (1, distribution_id.bytes),
                (2, chain_id),
                (3, iteration),
                (4, chain_key),
                (5, signing_key.serialize()),
            ]
        )
        return cls(
            message_version, distribution_id, chain_id, iteration, chain_key, signing_key, body
        )

    @classmethod
    def deserialize(cls, data: bytes) -> SenderKeyDistributionMessage:
        """Parse a serialized distribution message."""
        data = bytes(data)
        if len(data) < 1 + 32 + 32:
            raise InvalidMessageError("sender key distribution message too short")
        version = _parse_version(data[0])
        fields = protobuf.decode(data[1:])
        distribution_id = _parse_distribution_id(fields.optional_bytes(1))
        chain_id = _required_uint32(fields, 2)
        iteration = _required_uint32(fields, 3)
        chain_key = fields.required_bytes(4)
        signing_key_bytes = fields.required_bytes(5)
        if len(chain_key) != 32 or len(signing_key_bytes) != 33:
            raise InvalidMessageError("invalid sender key distribution message")
        signing_key = PublicKey.deserialize(signing_key_bytes)
        return cls(version, distribution_id, chain_id, iteration, chain_key, signing_key, data)

    def serialize(self) -> bytes:
        """The wire bytes."""
        return self.serialized


# --------------------------------------------------------------------------------------------
# State and record


@functools.lru_cache(maxsize=16)
def _signing_private_key(raw: bytes) -> PrivateKey:
    """Our own signing keys, kept as objects across record loads: a :class:`PrivateKey` caches
    the Edwards form XEdDSA signing needs, which otherwise costs a scalar multiplication per
    message. (The same secrets sit in the sender key store; nothing here is logged.)"""
    return PrivateKey.deserialize(raw)


@functools.lru_cache(maxsize=256)
def _signing_public_key(raw: bytes) -> PublicKey:
    """Members' signing keys, kept as objects across record loads (a :class:`PublicKey` caches
    its Edwards form for verification)."""
    return PublicKey.deserialize(raw)


_SigningCache = tuple[PublicKey, PrivateKey | None, bytes]


@functools.lru_cache(maxsize=256)
def _chain_id_varint(chain_id: int) -> bytes:
    """A chain id as a varint (five bytes for most 31-bit ids), encoded once per chain."""
    return protobuf.encode_varint(chain_id)


def _varint_field(tag: int, value: int) -> bytes:
    """A varint field with a one-byte ``tag`` (``field number << 3``), or nothing for 0: what
    ``protobuf.encode`` writes for ``(number, value or None)``."""
    if not value:
        return b""
    if 0 < value < 0x80:
        return bytes((tag, value))
    return bytes((tag,)) + protobuf.encode_varint(value)


def _bytes_field(tag: int, value: bytes) -> bytes:
    """A length-delimited field with a one-byte ``tag`` (``field number << 3 | 2``): what
    ``protobuf.encode`` writes for ``(number, value)``."""
    length = len(value)
    if length < 0x80:
        return bytes((tag, length)) + value
    return bytes((tag,)) + protobuf.encode_varint(length) + value


def _encode_signing(public: PublicKey, private: PrivateKey | None) -> bytes:
    raw_private = None if private is None else private.serialize() or None
    return protobuf.encode([(1, public.serialize()), (2, raw_private)])


@functools.lru_cache(maxsize=256)
def _signing_keys(raw: bytes) -> _SigningCache:
    """A state's ``SenderKeyStateStructure.SenderSigningKey`` sub-message → ``(public key,
    private key or None, its canonical encoding)``. The signing key of a chain never changes,
    so parsing it (and re-encoding it on store) is done once per key rather than per message.
    """
    signing = protobuf.decode(raw)
    public_raw = signing.optional_bytes(1) or b""
    private_raw = signing.optional_bytes(2) or b""
    try:
        public = _signing_public_key(public_raw)
        private = _signing_private_key(private_raw) if private_raw else None
    except InvalidKeyError as exc:
        raise InvalidStateError("invalid signing key in sender key state") from exc
    return public, private, _encode_signing(public, private)


def _common_state_layout(data: bytes) -> tuple[int, int, bytes, bytes, int] | None:
    """``(chain id, iteration, chain key, signing sub-message, version)`` of a serialized state
    laid out the way :meth:`SenderKeyState._encode` and libsignal write one without skipped
    message keys (fields 1?, 2, 3, 5? in that order, once each, with short lengths); ``None``
    for anything else, which the general parser then handles. For the inputs it accepts, the
    result is exactly what the general parser gives (a fast path for every message's load).
    """
    end = len(data)
    try:
        pos = 0
        chain_id = 0
        if end and data[0] == 0x08:
            chain_id, pos = protobuf.decode_varint(data, 1)
        if pos + 2 > end or data[pos] != 0x12 or data[pos + 1] >= 0x80:
            return None
        stop = pos + 2 + data[pos + 1]
        if stop > end:
            return None
        chain = data[pos + 2 : stop]
        pos = stop
        if pos + 2 > end or data[pos] != 0x1A or data[pos + 1] >= 0x80:
            return None
        stop = pos + 2 + data[pos + 1]
        if stop > end:
            return None
        signing = data[pos + 2 : stop]
        pos = stop
        version = 0
        if pos < end:
            if data[pos] != 0x28:
                return None
            version, pos = protobuf.decode_varint(data, pos + 1)
        if pos != end:
            return None
        chain_end = len(chain)
        pos = 0
        iteration = 0
        if chain_end and chain[0] == 0x08:
            iteration, pos = protobuf.decode_varint(chain, 1)
        chain_key = b""
        if pos < chain_end:
            if pos + 2 > chain_end or chain[pos] != 0x12 or chain[pos + 1] >= 0x80:
                return None
            if pos + 2 + chain[pos + 1] != chain_end:
                return None
            chain_key = chain[pos + 2 :]
    except InvalidMessageError:
        return None
    return (
        chain_id & _U32_MAX,
        iteration & _U32_MAX,
        chain_key,
        signing,
        version & _U32_MAX,
    )


def _common_record_layout(data: bytes) -> list[bytes] | None:
    """The serialized states of a record laid out the way :meth:`SenderKeyRecord.serialize`
    writes one (field 1 repeated, then field 15 with a known format last) or libsignal does
    (without field 15); ``None`` for anything else, which the general parser then handles. For
    the inputs it accepts, the result is exactly what the general parser gives.
    """
    states: list[bytes] = []
    end = len(data)
    pos = 0
    try:
        while pos < end:
            key = data[pos]
            if key == 0x0A:
                length, pos = protobuf.decode_varint(data, pos + 1)
                stop = pos + length
                if stop > end:
                    return None
                states.append(data[pos:stop])
                pos = stop
            elif key == 0x78 and pos + 2 == end and data[pos + 1] <= SENDER_KEY_RECORD_FORMAT:
                pos = end
            else:
                return None
    except InvalidMessageError:
        return None
    return states


def _record_states(data: bytes) -> list[bytes]:
    """The serialized states of a record, through the general protobuf parser."""
    fields = protobuf.decode(data)
    fmt = fields.optional_uint(_RECORD_FORMAT_FIELD)
    if fmt is not None and fmt > SENDER_KEY_RECORD_FORMAT:
        raise InvalidStateError(f"unknown sender key record format {fmt}")
    return fields.repeated_bytes(1)


class SenderKeyState:
    """One chain of a sender: chain id, current chain key, signing key, skipped message keys.

    ``message_keys`` maps iteration → message-key seed for skipped iterations, oldest first.
    """

    __slots__ = (
        "_chain",
        "_signing_cache",
        "chain_id",
        "message_keys",
        "message_version",
        "signing_private",
        "signing_public",
    )

    def __init__(
        self,
        message_version: int,
        chain_id: int,
        iteration: int,
        chain_key: bytes,
        signing_public: PublicKey,
        signing_private: PrivateKey | None = None,
        message_keys: dict[int, bytes] | None = None,
    ) -> None:
        self.message_version = message_version
        self.chain_id = chain_id
        self._chain = _ChainKey(iteration, chain_key)
        self.signing_public = signing_public
        self.signing_private = signing_private
        self.message_keys: dict[int, bytes] = {} if message_keys is None else message_keys
        self._signing_cache: _SigningCache | None = None

    @property
    def iteration(self) -> int:
        """The iteration of the next message this chain will produce or expect."""
        return self._chain.iteration

    @property
    def chain_key(self) -> bytes:
        """The current chain key (what a distribution message would carry)."""
        return self._chain.key

    def copy(self) -> SenderKeyState:
        """An independent copy (the keys are immutable and shared)."""
        state = SenderKeyState(
            self.message_version,
            self.chain_id,
            self._chain.iteration,
            self._chain.key,
            self.signing_public,
            self.signing_private,
            dict(self.message_keys),
        )
        state._signing_cache = self._signing_cache
        return state

    def _add_message_key(self, iteration: int, seed: bytes) -> None:
        keys = self.message_keys
        keys[iteration] = seed
        while len(keys) > MAX_MESSAGE_KEYS:
            del keys[next(iter(keys))]

    def _encode(self) -> bytes:
        # The fields written directly rather than through protobuf.encode (a record is stored
        # after every group message): 1: chain id, 2: chain (1: iteration, 2: key), 3: signing
        # key, 4: skipped message keys (1: iteration, 2: seed), 5: version; zeros and empty
        # keys left out, as protobuf.encode does with ``or None``.
        iteration, key = self._chain
        chain = _varint_field(0x08, iteration) + (_bytes_field(0x12, key) if key else b"")
        cache = self._signing_cache
        if (
            cache is not None
            and cache[0] is self.signing_public
            and cache[1] is self.signing_private
        ):
            signing = cache[2]
        else:
            signing = _encode_signing(self.signing_public, self.signing_private)
            self._signing_cache = (self.signing_public, self.signing_private, signing)
        chain_id = self.chain_id
        parts = [
            b"\x08" + _chain_id_varint(chain_id) if chain_id else b"",
            _bytes_field(0x12, chain),
            _bytes_field(0x1A, signing),
        ]
        for skipped, seed in self.message_keys.items():
            message_key = _varint_field(0x08, skipped) + (_bytes_field(0x12, seed) if seed else b"")
            parts.append(_bytes_field(0x22, message_key))
        parts.append(_varint_field(0x28, self.message_version))
        return b"".join(parts)

    @classmethod
    def _decode(cls, data: bytes) -> SenderKeyState:
        fast = _common_state_layout(data)
        if fast is None:
            return cls._decode_fields(data)
        chain_id, iteration, chain_key, signing_raw, version = fast
        signing = _signing_keys(signing_raw)
        state = cls(
            version or SENDERKEY_MESSAGE_CURRENT_VERSION,
            chain_id,
            iteration,
            chain_key,
            signing[0],
            signing[1],
        )
        state._signing_cache = signing
        return state

    @classmethod
    def _decode_fields(cls, data: bytes) -> SenderKeyState:
        fields = protobuf.decode(data)
        version = fields.optional_uint32(5) or SENDERKEY_MESSAGE_CURRENT_VERSION
        chain_id = fields.optional_uint32(1) or 0
        chain_raw = fields.optional_bytes(2)
        signing_raw = fields.optional_bytes(3)
        if chain_raw is None or signing_raw is None:
            raise InvalidStateError("sender key state without chain or signing key")
        chain = protobuf.decode(chain_raw)
        signing = _signing_keys(signing_raw)
        public, private, _ = signing
        keys: dict[int, bytes] = {}
        for raw in fields.repeated_bytes(4):
            mk = protobuf.decode(raw)
            keys[mk.optional_uint32(1) or 0] = mk.optional_bytes(2) or b""
        state = cls(
            version,
            chain_id,
            chain.optional_uint32(1) or 0,
            chain.optional_bytes(2) or b"",
            public,
            private,
            keys,
        )
        state._signing_cache = signing
        return state


class SenderKeyRecord:
    """Up to :data:`MAX_SENDER_KEY_STATES` states of one ``(sender, distribution id)``,
    most recent first."""

    __slots__ = ("states",)

    def __init__(self, states: list[SenderKeyState] | None = None) -> None:
        self.states: list[SenderKeyState] = [] if states is None else states

    def is_empty(self) -> bool:
        """Whether the record holds no state."""
        return not self.states

    def current_state(self) -> SenderKeyState:
        """The most recent state; :class:`InvalidSenderKeySessionError` if there is none."""
        if not self.states:
            raise InvalidSenderKeySessionError("empty sender key record")
        return self.states[0]

    def state_for_chain_id(self, chain_id: int) -> SenderKeyState | None:
        """The state with ``chain_id``, or ``None``."""
        for state in self.states:
            if state.chain_id == chain_id:
                return state
        return None

    def add_state(
        self,
        message_version: int,
        chain_id: int,
        iteration: int,
        chain_key: bytes,
        signing_public: PublicKey,
        signing_private: PrivateKey | None = None,
    ) -> None:
        """Make the given chain the most recent state, as libsignal does.

        A state with the same chain id and signing key is kept as it is (and moved to the
        front); one with the same chain id but another signing key is dropped; the oldest states
        are dropped beyond :data:`MAX_SENDER_KEY_STATES`.
        """
        existing: SenderKeyState | None = None
        for index, state in enumerate(self.states):
            if state.chain_id == chain_id and state.signing_public == signing_public:
                existing = self.states.pop(index)
                break
        self.states = [s for s in self.states if s.chain_id != chain_id]
        if existing is None:
            existing = SenderKeyState(
                message_version, chain_id, iteration, chain_key, signing_public, signing_private
            )
        del self.states[MAX_SENDER_KEY_STATES - 1 :]
        self.states.insert(0, existing)

    def _replace_state(self, old: SenderKeyState, new: SenderKeyState) -> None:
        for index, state in enumerate(self.states):
            if state is old:
                self.states[index] = new
                return
        raise InvalidStateError("sender key state vanished from its record")

    def serialize(self) -> bytes:
        """Stable bytes: libsignal's ``SenderKeyRecordStructure`` plus the format field."""
        parts = [_bytes_field(0x0A, state._encode()) for state in self.states]
        parts.append(_RECORD_FORMAT_TRAILER)
        return b"".join(parts)

    @classmethod
    def deserialize(cls, data: bytes) -> SenderKeyRecord:
        """Parse :meth:`serialize`'s output (or a record libsignal serialized)."""
        data = bytes(data)
        try:
            states = _common_record_layout(data)
            if states is None:
                states = _record_states(data)
            return cls([SenderKeyState._decode(raw) for raw in states])
        except InvalidMessageError as exc:
            raise InvalidStateError("corrupt sender key record") from exc

    def __repr__(self) -> str:
        chains = ", ".join(f"{s.chain_id}@{s.iteration}" for s in self.states)
        return f"SenderKeyRecord([{chains}])"


# --------------------------------------------------------------------------------------------
# Store


class AddressLike(Protocol):
    """What the sender-key functions need of an address (``ProtocolAddress(name, device_id)``)."""

    @property
    def name(self) -> str:
        """The account's identifier."""
        ...

    @property
    def device_id(self) -> int:
        """The device number."""
        ...


@runtime_checkable
class SenderKeyStore(Protocol):
    """Where sender key records live, per ``(sender address, distribution id)``."""

    def store_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Save ``record`` for ``(sender, distribution_id)``, replacing any previous one."""
        ...

    def load_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """The record for ``(sender, distribution_id)``, or ``None``."""
        ...


class InMemorySenderKeyStore:
    """A :class:`SenderKeyStore` in a dict. Records are kept serialized, as on disk, so that a
    loaded record is always an independent copy."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, int, uuid.UUID], bytes] = {}

    def store_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        self._records[(sender.name, sender.device_id, distribution_id)] = record.serialize()

    def load_sender_key(
        self, sender: AddressLike, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        raw = self._records.get((sender.name, sender.device_id, distribution_id))
        return None if raw is None else SenderKeyRecord.deserialize(raw)


# --------------------------------------------------------------------------------------------
# Operations


def create_sender_key_distribution_message(
    sender: AddressLike, distribution_id: uuid.UUID, store: SenderKeyStore
) -> SenderKeyDistributionMessage:
    """The distribution message for our own sender key, creating the key on first use."""
    record = store.load_sender_key(sender, distribution_id)
    if record is None or record.is_empty():
        chain_id = int.from_bytes(os.urandom(4), "big") >> 1  # 31 bits, as libsignal
        signing = KeyPair.generate()
        record = SenderKeyRecord()
        record.add_state(
            SENDERKEY_MESSAGE_CURRENT_VERSION,
            chain_id,
            0,
            os.urandom(32),
            signing.public_key,
            signing.private_key,
        )
        store.store_sender_key(sender, distribution_id, record)
    state = record.current_state()
    return SenderKeyDistributionMessage.create(
        state.message_version,
        distribution_id,
        state.chain_id,
        state.iteration,
        state.chain_key,
        state.signing_public,
    )


def process_sender_key_distribution_message(
    sender: AddressLike, skdm: SenderKeyDistributionMessage, store: SenderKeyStore
) -> None:
    """Remember another member's sender key so that its group messages can be decrypted."""
    record = store.load_sender_key(sender, skdm.distribution_id) or SenderKeyRecord()
    record.add_state(
        skdm.message_version,
        skdm.chain_id,
        skdm.iteration,
        skdm.chain_key,
        skdm.signing_key,
        None,
    )
    store.store_sender_key(sender, skdm.distribution_id, record)


def group_encrypt(
    store: SenderKeyStore, sender: AddressLike, distribution_id: uuid.UUID, plaintext: bytes
) -> SenderKeyMessage:
    """Encrypt and sign ``plaintext`` with our sender key for ``distribution_id``."""
    record = store.load_sender_key(sender, distribution_id)
    if record is None:
        raise NoSenderKeyStateError(distribution_id)
    state = record.current_state()
    if state.signing_private is None:
        raise InvalidSenderKeySessionError(f"no signing key for distribution ID {distribution_id}")
    chain = state._chain
    seed, following = chain.step()
    iv, key = _message_key_material(seed)
    ciphertext = _aes_cbc_encrypt(key, iv, plaintext)
    message = SenderKeyMessage.create(
        state.message_version,
        distribution_id,
        state.chain_id,
        chain.iteration,
        ciphertext,
        state.signing_private,
    )
    state._chain = following
    store.store_sender_key(sender, distribution_id, record)
    return message


def _take_message_seed(state: SenderKeyState, iteration: int) -> bytes:
    """The message-key seed for ``iteration``, advancing ``state`` (a private copy)."""
    chain = state._chain
    if chain.iteration > iteration:
        seed = state.message_keys.pop(iteration, None)
        if seed is None:
            raise DuplicateMessageError(
                f"sender key message for iteration {iteration} already received"
                f" (chain at {chain.iteration})"
            )
        return seed
    if iteration - chain.iteration > MAX_FORWARD_JUMPS:
        raise InvalidMessageError("sender key message from too far into the future")
    while chain.iteration < iteration:
        seed, following = chain.step()
        state._add_message_key(chain.iteration, seed)
        chain = following
    seed, state._chain = chain.step()
    return seed


def group_decrypt(ciphertext: bytes, store: SenderKeyStore, sender: AddressLike) -> bytes:
    """Verify and decrypt a serialized :class:`SenderKeyMessage` from ``sender``.

    The store is updated only when the message decrypts.
    """
    data = bytes(ciphertext)
    version, distribution_id, chain_id, iteration, body = _parse_message(data)
    record = store.load_sender_key(sender, distribution_id)
    if record is None:
        raise NoSenderKeyStateError(distribution_id)
    stored = record.state_for_chain_id(chain_id)
    if stored is None:
        raise NoSenderKeyStateError(distribution_id)
    if version != stored.message_version:
        raise UnrecognizedMessageVersionError(f"sender key message version {version}")
    if not stored.signing_public.verify_signature(
        data[:-_SIGNATURE_LENGTH], data[-_SIGNATURE_LENGTH:]
    ):
        raise InvalidSenderKeySignatureError("sender key message signature does not verify")
    chain = stored._chain
    if iteration == chain.iteration:
        # The chain's next message, the common case: no key skipped or taken from the stored
        # ones, so the loaded record (our own copy) advances in place once the message decrypted.
        seed, following = chain.step()
        iv, key = _message_key_material(seed)
        plaintext = _aes_cbc_decrypt(key, iv, body)
        stored._chain = following
    else:
        state = stored.copy()
        iv, key = _message_key_material(_take_message_seed(state, iteration))
        plaintext = _aes_cbc_decrypt(key, iv, body)
        record._replace_state(stored, state)
    store.store_sender_key(sender, distribution_id, record)
    return plaintext
