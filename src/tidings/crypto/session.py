"""Double Ratchet session state, the per-peer session record, their limits and serialization.

A :class:`SessionRecord` holds the current :class:`SessionState` and up to 40 archived ones
(newest first), which are kept so that messages sent before a session was replaced still
decrypt. Each state keeps at most 5 receiver chains and, per chain, at most 2,000 skipped
message keys (oldest dropped first), as libsignal does.

Serialization (our own, stable format): a format byte (``0x01``) followed by msgpack of
array-like structs; fields are only ever appended, with defaults, so older records keep
decoding. Archived states stay encoded until a decryption needs them. Skipped message keys are
stored as their 32-byte seeds and expanded when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import msgspec

from .errors import InvalidStateError

__all__ = [
    "ARCHIVED_STATES_MAX_LENGTH",
    "MAX_FORWARD_JUMPS",
    "MAX_MESSAGE_KEYS",
    "MAX_RECEIVER_CHAINS",
    "MAX_UNACKNOWLEDGED_SESSION_AGE",
    "PendingPreKey",
    "ReceiverChain",
    "SenderChain",
    "SessionRecord",
    "SessionState",
]

MAX_FORWARD_JUMPS: Final = 25_000
"""How far ahead of a receiver chain a message's counter may be (except with oneself)."""
MAX_MESSAGE_KEYS: Final = 2_000
"""Skipped message keys kept per receiver chain."""
MAX_RECEIVER_CHAINS: Final = 5
"""Receiver chains kept per session state."""
ARCHIVED_STATES_MAX_LENGTH: Final = 40
"""Previous session states kept per record."""
MAX_UNACKNOWLEDGED_SESSION_AGE: Final = 60 * 60 * 24 * 30
"""Seconds after which a session whose PreKey message was never answered is not used."""

_FORMAT: Final = 0x01


class SenderChain(msgspec.Struct, array_like=True):
    """Our current ratchet key pair and sending chain."""

    ratchet_public: bytes  # 33 bytes, 0x05 ‖ key
    ratchet_private: bytes  # 32 bytes
    chain_key: bytes
    index: int

    def __repr__(self) -> str:  # keys stay out of logs
        return f"SenderChain(index={self.index})"


class ReceiverChain(msgspec.Struct, array_like=True):
    """A chain for one of the peer's ratchet keys, with the keys of messages skipped on it."""

    ratchet_public: bytes  # 33 bytes, 0x05 ‖ key
    chain_key: bytes
    index: int
    message_keys: dict[int, bytes] = msgspec.field(default_factory=dict)
    """Counter → message-key seed, oldest first."""

    def __repr__(self) -> str:  # keys stay out of logs
        return f"ReceiverChain(index={self.index}, skipped_keys={len(self.message_keys)})"

    def add_message_keys(self, seeds: list[tuple[int, bytes]]) -> None:
        """Remember skipped message keys, dropping the oldest beyond ``MAX_MESSAGE_KEYS``."""
        keys = self.message_keys
        for counter, seed in seeds:
            keys[counter] = seed
        excess = len(keys) - MAX_MESSAGE_KEYS
        if excess > 0:
            for counter in list(keys)[:excess]:
                del keys[counter]


class PendingPreKey(msgspec.Struct, array_like=True):
    """What an initiator repeats in every message until the peer answers (a PreKey message)."""

    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: bytes  # 33 bytes
    timestamp: int  # seconds since the epoch, when the session was created
    kyber_pre_key_id: int | None = None
    kyber_ciphertext: bytes | None = None


class SessionState(msgspec.Struct, array_like=True):
    """One Double Ratchet session with a peer device."""

    session_version: int
    local_identity: bytes  # 33 bytes
    remote_identity: bytes  # 33 bytes
    root_key: bytes
    previous_counter: int
    sender_chain: SenderChain | None
    receiver_chains: list[ReceiverChain]
    pending_pre_key: PendingPreKey | None
    remote_registration_id: int
    local_registration_id: int
    alice_base_key: bytes  # 33 bytes: the initiator's base key, which names the session

    def __repr__(self) -> str:  # keys stay out of logs
        return (
            f"SessionState(version={self.session_version}, sender_chain={self.sender_chain!r}, "
            f"receiver_chains={self.receiver_chains!r})"
        )

    def receiver_chain(self, ratchet_public: bytes) -> ReceiverChain | None:
        """The receiver chain for the peer's ratchet key (33-byte form), if kept."""
        for chain in self.receiver_chains:
            if chain.ratchet_public == ratchet_public:
                return chain
        return None

    def add_receiver_chain(self, chain: ReceiverChain) -> None:
        """Add a chain, dropping the oldest beyond ``MAX_RECEIVER_CHAINS``."""
        self.receiver_chains.append(chain)
        if len(self.receiver_chains) > MAX_RECEIVER_CHAINS:
            del self.receiver_chains[0]

    def session_with_self(self) -> bool:
        """Whether this is a session with our own identity (another of our devices)."""
        return self.local_identity == self.remote_identity

    def has_usable_sender_chain(self, now: float) -> bool:
        """Whether we can send: a sender chain, and no PreKey message left unanswered too long."""
        if self.sender_chain is None:
            return False
        pending = self.pending_pre_key
        return pending is None or pending.timestamp + MAX_UNACKNOWLEDGED_SESSION_AGE >= now


class _RecordStructure(msgspec.Struct, array_like=True):
    current: SessionState | None
    previous: list[msgspec.Raw]


_encoder: Final = msgspec.msgpack.Encoder()
_record_decoder: Final = msgspec.msgpack.Decoder(_RecordStructure)
_state_decoder: Final = msgspec.msgpack.Decoder(SessionState)


class SessionRecord:
    """All session states with one peer device: the current one and archived ones."""

    __slots__ = ("_current", "_previous")

    def __init__(
        self, current: SessionState | None = None, previous: list[msgspec.Raw] | None = None
    ) -> None:
        """A record with ``current`` as its state; see also :meth:`new_fresh`."""
        self._current = current
        self._previous: list[msgspec.Raw] = previous if previous is not None else []

    @classmethod
    def new_fresh(cls) -> SessionRecord:
        """An empty record."""
        return cls()

    def serialize(self) -> bytes:
        """The record in our stable storage format."""
        return bytes((_FORMAT,)) + _encoder.encode(_RecordStructure(self._current, self._previous))

    @classmethod
    def deserialize(cls, data: bytes) -> SessionRecord:
        """Parse :meth:`serialize`'s output; :class:`InvalidStateError` if corrupt."""
        data = bytes(data)  # archived states keep views into it: it must not change
        if not data or data[0] != _FORMAT:
            raise InvalidStateError("unknown session record format")
        try:
            record = _record_decoder.decode(memoryview(data)[1:])
        except (msgspec.DecodeError, ValueError) as exc:
            raise InvalidStateError("corrupt session record") from exc
        return cls(record.current, record.previous)

    def session_state(self) -> SessionState | None:
        """The current state, if any."""
        return self._current

    def has_current_state(self) -> bool:
        """Whether the record has a current state."""
        return self._current is not None

    def has_usable_sender_chain(self, now: float) -> bool:
        """Whether :func:`message_encrypt` can use this record at ``now`` (UNIX seconds)."""
        return self._current is not None and self._current.has_usable_sender_chain(now)

    def session_version(self) -> int:
        """The current state's version (3 or 4); :class:`InvalidStateError` without one."""
        return self._require_current().session_version

    def local_registration_id(self) -> int:
        """Our registration id as recorded in the current state."""
        return self._require_current().local_registration_id

    def remote_registration_id(self) -> int:
        """The peer's registration id as recorded in the current state."""
        return self._require_current().remote_registration_id

    def alice_base_key(self) -> bytes:
        """The current session's initiator base key (33 bytes); it identifies the session."""
        return self._require_current().alice_base_key

    def _require_current(self) -> SessionState:
        if self._current is None:
            raise InvalidStateError("no current session")
        return self._current

    def previous_session_count(self) -> int:
        """How many archived states the record holds."""
        return len(self._previous)

    def previous_session_states(self) -> Iterator[tuple[int, SessionState]]:
        """Decode the archived states, newest first, with their indexes.

        Each yielded state is a fresh object: changing it does not change the record.
        """
        for index, raw in enumerate(self._previous):
            try:
                yield index, _state_decoder.decode(raw)
            except (msgspec.DecodeError, ValueError) as exc:
                raise InvalidStateError("corrupt archived session state") from exc

    def find_state(self, version: int, alice_base_key: bytes) -> tuple[int, SessionState] | None:
        """The state started with ``alice_base_key`` at ``version``: ``(-1, current)`` or an
        archived ``(index, state)``; ``None`` if the record has no such session."""
        current = self._current
        if (
            current is not None
            and current.session_version == version
            and current.alice_base_key == alice_base_key
        ):
            return -1, current
        for index, state in self.previous_session_states():
            if state.session_version == version and state.alice_base_key == alice_base_key:
                return index, state
        return None

    def archive_current_state(self) -> None:
        """Move the current state to the archive (newest first), keeping at most 40."""
        current = self._current
        if current is None:
            return
        current.pending_pre_key = None
        self._previous.insert(0, msgspec.Raw(_encoder.encode(current)))
        del self._previous[ARCHIVED_STATES_MAX_LENGTH:]
        self._current = None

    def promote_state(self, state: SessionState) -> None:
        """Make ``state`` current, archiving the previous current state."""
        self.archive_current_state()
        self._current = state

    def promote_old_session(self, index: int, state: SessionState) -> None:
        """Replace archived state ``index`` by ``state`` (its updated copy) and make it current."""
        del self._previous[index]
        self.promote_state(state)
