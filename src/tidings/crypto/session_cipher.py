"""Starting sessions and encrypting/decrypting 1:1 messages, mirroring libsignal's functions.

Every function is transactional: it checks everything first and changes the session record
(and the other stores) only when the operation succeeds. Decryption works out what a message
would change (new ratchet step, skipped keys, chain advance) without touching the state, and
applies it only once the MAC has verified and the ciphertext has decrypted.

Time (``now``) is UNIX seconds; it defaults to the current time.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

from .address import ProtocolAddress
from .bundle import PreKeyBundle
from .errors import (
    DuplicateMessageError,
    InvalidMacError,
    InvalidMessageError,
    InvalidSessionError,
    InvalidSignatureError,
    NoSessionError,
    SignalProtocolError,
    UnrecognizedMessageVersionError,
    UntrustedIdentityError,
)
from .keys import IdentityKey, KeyPair, PrivateKey, PublicKey
from .messages import PreKeySignalMessage, SignalMessage, prekey_header
from .ratchet import chain_step, message_keys, root_step
from .session import (
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_UNACKNOWLEDGED_SESSION_AGE,
    PendingPreKey,
    ReceiverChain,
    SenderChain,
    SessionRecord,
    SessionState,
)
from .stores import (
    Direction,
    IdentityKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)
from .symmetric import aes_256_cbc_decrypt, aes_256_cbc_encrypt
from .x3dh import initialize_initiator_session, initialize_recipient_session

__all__ = [
    "message_decrypt",
    "message_decrypt_prekey",
    "message_decrypt_signal",
    "message_encrypt",
    "process_prekey_bundle",
]


def process_prekey_bundle(
    bundle: PreKeyBundle,
    address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    now: float | None = None,
) -> None:
    """Start a session with ``address`` from its published keys (we are the initiator).

    Raises :class:`UntrustedIdentityError` if the bundle's identity is not trusted for sending,
    :class:`InvalidSignatureError` if the signed or Kyber prekey signature does not verify.
    The new session becomes current (the old one is archived); until the peer answers, our
    messages are PreKey messages.
    """
    their_identity = bundle.identity_key
    if not identity_store.is_trusted_identity(address, their_identity, Direction.SENDING):
        raise UntrustedIdentityError(address.name)
    if not their_identity.verify_signature(
        bundle.signed_pre_key_public.serialize(), bundle.signed_pre_key_signature
    ):
        raise InvalidSignatureError("signed prekey signature does not verify")
    kyber_public = bundle.kyber_pre_key_public
    if kyber_public is not None and not their_identity.verify_signature(
        kyber_public.serialize(), bundle.kyber_pre_key_signature or b""
    ):
        raise InvalidSignatureError("Kyber prekey signature does not verify")

    record = session_store.load_session(address) or SessionRecord.new_fresh()
    base_key = KeyPair.generate()
    state, kyber_ciphertext = initialize_initiator_session(
        identity_store.get_identity_key_pair(),
        base_key,
        their_identity,
        bundle.signed_pre_key_public,
        bundle.pre_key_public,
        kyber_public,
    )
    state.pending_pre_key = PendingPreKey(
        pre_key_id=bundle.pre_key_id,
        signed_pre_key_id=bundle.signed_pre_key_id,
        base_key=base_key.public_key.serialize(),
        timestamp=int(time.time() if now is None else now),
        kyber_pre_key_id=bundle.kyber_pre_key_id,
        kyber_ciphertext=kyber_ciphertext,
    )
    state.local_registration_id = identity_store.get_local_registration_id()
    state.remote_registration_id = bundle.registration_id
    identity_store.save_identity(address, their_identity)
    record.promote_state(state)
    session_store.store_session(address, record)


def message_encrypt(
    ptext: bytes,
    address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    now: float | None = None,
) -> SignalMessage | PreKeySignalMessage:
    """Encrypt ``ptext`` for ``address``: a PreKey message until the peer has answered.

    Raises :class:`NoSessionError` without a session (or when our PreKey messages went
    unanswered for 30 days), :class:`UntrustedIdentityError` if the peer's identity is not
    trusted for sending.
    """
    record = session_store.load_session(address)
    state = record.session_state() if record is not None else None
    if record is None or state is None:
        raise NoSessionError(f"no session for {address}")
    sender = state.sender_chain
    if sender is None:
        raise InvalidSessionError("session has no sender chain")
    pending = state.pending_pre_key
    now = time.time() if now is None else now
    if pending is not None and pending.timestamp + MAX_UNACKNOWLEDGED_SESSION_AGE < now:
        raise NoSessionError(f"stale unacknowledged session for {address}")
    their_identity = _identity(state.remote_identity)
    if not identity_store.is_trusted_identity(address, their_identity, Direction.SENDING):
        raise UntrustedIdentityError(address.name)

    seed, next_key = chain_step(sender.chain_key)
    keys = message_keys(seed)
    local_identity = _identity(state.local_identity)
    message = SignalMessage.create(
        state.session_version,
        keys.mac_key,
        PublicKey.deserialize(sender.ratchet_public),
        sender.index,
        state.previous_counter,
        aes_256_cbc_encrypt(ptext, keys.cipher_key, keys.iv),
        local_identity,
        their_identity,
    )
    result: SignalMessage | PreKeySignalMessage = message
    if pending is not None:
        base_key, header = _prekey_header(state, pending, local_identity)
        result = PreKeySignalMessage(
            state.session_version,
            state.local_registration_id,
            pending.pre_key_id,
            pending.signed_pre_key_id,
            pending.kyber_pre_key_id,
            pending.kyber_ciphertext,
            base_key,
            local_identity,
            message,
            header=header,
        )
    sender.chain_key = next_key
    sender.index += 1
    identity_store.save_identity(address, their_identity)
    session_store.store_session(address, record)
    return result


@functools.lru_cache(maxsize=256)
def _identity(data: bytes) -> IdentityKey:
    """``IdentityKey.deserialize(data)``, parsed once for the many messages of a session (public
    keys: the same few for every message)."""
    return IdentityKey.deserialize(data)


#: per unanswered session (keyed by everything the header holds): its parsed base key and
#: encoded PreKey message header, the same in each of its messages until the peer answers
_PREKEY_HEADERS: dict[tuple[object, ...], tuple[PublicKey, tuple[bytes, bytes]]] = {}
#: unanswered sessions whose header is kept at most
_PREKEY_HEADERS_KEPT = 256


def _prekey_header_key(state: SessionState, pending: PendingPreKey) -> tuple[object, ...]:
    return (
        state.session_version,
        state.local_registration_id,
        state.local_identity,
        pending.pre_key_id,
        pending.signed_pre_key_id,
        pending.kyber_pre_key_id,
        pending.base_key,
        pending.kyber_ciphertext,
    )


def _prekey_header(
    state: SessionState, pending: PendingPreKey, local_identity: IdentityKey
) -> tuple[PublicKey, tuple[bytes, bytes]]:
    """The base key and :func:`~.messages.prekey_header` of an unanswered session, encoded
    once for all its messages. The key is every value the header holds, so a session whose
    pending prekey changed gets a new one; :func:`_apply` drops it once the peer answers."""
    key = _prekey_header_key(state, pending)
    found = _PREKEY_HEADERS.get(key)
    if found is None:
        base_key = PublicKey.deserialize(pending.base_key)
        found = (
            base_key,
            prekey_header(
                state.session_version,
                state.local_registration_id,
                pending.pre_key_id,
                pending.signed_pre_key_id,
                pending.kyber_pre_key_id,
                pending.kyber_ciphertext,
                base_key,
                local_identity,
            ),
        )
        if len(_PREKEY_HEADERS) >= _PREKEY_HEADERS_KEPT:
            _PREKEY_HEADERS.clear()
        _PREKEY_HEADERS[key] = found
    return found


def message_decrypt(
    message: SignalMessage | PreKeySignalMessage,
    address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    prekey_store: PreKeyStore,
    signed_prekey_store: SignedPreKeyStore,
    kyber_prekey_store: KyberPreKeyStore,
) -> bytes:
    """Decrypt either kind of message; see the two functions it dispatches to."""
    if isinstance(message, PreKeySignalMessage):
        return message_decrypt_prekey(
            message,
            address,
            session_store,
            identity_store,
            prekey_store,
            signed_prekey_store,
            kyber_prekey_store,
        )
    return message_decrypt_signal(message, address, session_store, identity_store)


def message_decrypt_prekey(
    message: PreKeySignalMessage,
    address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    prekey_store: PreKeyStore,
    signed_prekey_store: SignedPreKeyStore,
    kyber_prekey_store: KyberPreKeyStore,
) -> bytes:
    """Decrypt a PreKey message, starting the session it announces unless it already exists.

    Raises :class:`UntrustedIdentityError`, :class:`InvalidPreKeyIdError` (or its signed /
    Kyber subclasses) for a prekey we do not have, :class:`DuplicateMessageError`, or
    :class:`InvalidMessageError` (:class:`InvalidMacError` for a bad MAC). On success the
    session is stored, the one-time prekey removed and the Kyber prekey marked used.
    """
    their_identity = message.identity_key
    if not identity_store.is_trusted_identity(address, their_identity, Direction.RECEIVING):
        raise UntrustedIdentityError(address.name)
    record = session_store.load_session(address) or SessionRecord.new_fresh()

    found = record.find_state(message.message_version, message.base_key.serialize())
    if found is None:
        signed = signed_prekey_store.get_signed_pre_key(message.signed_pre_key_id)
        kyber = (
            kyber_prekey_store.get_kyber_pre_key(message.kyber_pre_key_id).key_pair()
            if message.kyber_pre_key_id is not None
            else None
        )
        one_time = (
            prekey_store.get_pre_key(message.pre_key_id).key_pair()
            if message.pre_key_id is not None
            else None
        )
        state = initialize_recipient_session(
            identity_store.get_identity_key_pair(),
            signed.key_pair(),
            one_time,
            kyber,
            their_identity,
            message.base_key,
            message.kyber_ciphertext,
        )
        state.local_registration_id = identity_store.get_local_registration_id()
        state.remote_registration_id = message.registration_id
    else:
        state = found[1]

    try:
        decryption = _decrypt_with_state(state, message.message)
    except DuplicateMessageError:
        raise
    except SignalProtocolError as exc:
        raise _decryption_failure([exc]) from exc
    _apply(state, decryption)
    if found is None:
        record.promote_state(state)
    elif found[0] >= 0:
        record.promote_old_session(found[0], state)

    identity_store.save_identity(address, their_identity)
    session_store.store_session(address, record)
    if found is None:
        if message.pre_key_id is not None:
            prekey_store.remove_pre_key(message.pre_key_id)
        if message.kyber_pre_key_id is not None:
            kyber_prekey_store.mark_kyber_pre_key_used(message.kyber_pre_key_id)
    return decryption.plaintext


def message_decrypt_signal(
    message: SignalMessage,
    address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
) -> bytes:
    """Decrypt a Double Ratchet message with the current or an archived session state.

    A message that decrypts with an archived state makes that state current again. Raises
    :class:`NoSessionError`, :class:`DuplicateMessageError`, :class:`InvalidMessageError`
    (:class:`InvalidMacError` when every state failed on the MAC) or
    :class:`UntrustedIdentityError` (checked after decryption, before anything is stored).
    """
    record = session_store.load_session(address)
    if record is None:
        raise NoSessionError(f"no session for {address}")
    failures: list[SignalProtocolError] = []
    success: tuple[int, SessionState, _Decryption] | None = None
    current = record.session_state()
    if current is not None:
        try:
            success = (-1, current, _decrypt_with_state(current, message))
        except DuplicateMessageError:
            raise
        except SignalProtocolError as exc:
            failures.append(exc)
    if success is None:
        for index, state in record.previous_session_states():
            try:
                success = (index, state, _decrypt_with_state(state, message))
            except DuplicateMessageError:
                raise
            except SignalProtocolError as exc:
                failures.append(exc)
            else:
                break
    if success is None:
        if not failures:
            raise NoSessionError(f"no session for {address}")
        raise _decryption_failure(failures)

    index, state, decryption = success
    their_identity = IdentityKey.deserialize(state.remote_identity)
    if not identity_store.is_trusted_identity(address, their_identity, Direction.RECEIVING):
        raise UntrustedIdentityError(address.name)
    _apply(state, decryption)
    if index >= 0:
        record.promote_old_session(index, state)
    identity_store.save_identity(address, their_identity)
    session_store.store_session(address, record)
    return decryption.plaintext


class _Decryption(NamedTuple):
    """What decrypting one message does to a state, applied by :func:`_apply` on success."""

    plaintext: bytes
    ratchet_public: bytes
    # (root key, receiver chain key, our new ratchet pair, sender chain key) for a new chain
    new_ratchet: tuple[bytes, bytes, KeyPair, bytes] | None
    used_skipped_key: int | None  # counter of a stored skipped key that was used up
    skipped: list[tuple[int, bytes]]  # (counter, seed) of keys skipped over
    chain_key: bytes  # the receiver chain after the message
    chain_index: int


def _decrypt_with_state(state: SessionState, message: SignalMessage) -> _Decryption:
    """Decrypt ``message`` with ``state`` without changing it; raise on any failure."""
    if message.message_version != state.session_version:
        raise UnrecognizedMessageVersionError(
            f"message version {message.message_version} in a v{state.session_version} session"
        )
    their_ratchet = message.sender_ratchet_key
    ratchet_public = their_ratchet.serialize()
    chain = state.receiver_chain(ratchet_public)
    new_ratchet = None
    if chain is None:
        sender = state.sender_chain
        if sender is None:
            raise InvalidSessionError("session has no sender chain")
        root_key, chain_key = root_step(
            state.root_key, their_ratchet, PrivateKey(sender.ratchet_private)
        )
        our_new = KeyPair.generate()
        new_root, sender_chain_key = root_step(root_key, their_ratchet, our_new.private_key)
        new_ratchet = (new_root, chain_key, our_new, sender_chain_key)
        chain_index = 0
    else:
        chain_key, chain_index = chain.chain_key, chain.index

    counter = message.counter
    skipped: list[tuple[int, bytes]] = []
    used_skipped_key = None
    if counter < chain_index:
        seed = chain.message_keys.get(counter) if chain is not None else None
        if seed is None:
            raise DuplicateMessageError(f"message {counter} already decrypted")
        used_skipped_key = counter
    else:
        if counter - chain_index > MAX_FORWARD_JUMPS and not state.session_with_self():
            raise InvalidMessageError("message from too far into the future")
        keep_from = counter - MAX_MESSAGE_KEYS  # older skipped keys would be dropped at once
        for index in range(chain_index, counter):
            skipped_seed, chain_key = chain_step(chain_key)
            if index >= keep_from:
                skipped.append((index, skipped_seed))
        seed, chain_key = chain_step(chain_key)
        chain_index = counter + 1

    keys = message_keys(seed)
    if not message.verify_mac(
        IdentityKey.deserialize(state.remote_identity),
        IdentityKey.deserialize(state.local_identity),
        keys.mac_key,
    ):
        raise InvalidMacError("MAC verification failed")
    plaintext = aes_256_cbc_decrypt(message.ciphertext, keys.cipher_key, keys.iv)
    return _Decryption(
        plaintext, ratchet_public, new_ratchet, used_skipped_key, skipped, chain_key, chain_index
    )


def _apply(state: SessionState, decryption: _Decryption) -> None:
    """Commit a successful :func:`_decrypt_with_state` to ``state``."""
    if decryption.new_ratchet is not None:
        new_root, receiver_chain_key, our_new, sender_chain_key = decryption.new_ratchet
        chain = ReceiverChain(decryption.ratchet_public, receiver_chain_key, 0)
        state.root_key = new_root
        state.add_receiver_chain(chain)
        old_index = state.sender_chain.index if state.sender_chain is not None else 0
        state.previous_counter = max(old_index - 1, 0)
        state.sender_chain = SenderChain(
            our_new.public_key.serialize(),
            our_new.private_key.serialize(),
            sender_chain_key,
            0,
        )
    else:
        found = state.receiver_chain(decryption.ratchet_public)
        assert found is not None
        chain = found
    if decryption.used_skipped_key is not None:
        del chain.message_keys[decryption.used_skipped_key]
    else:
        if decryption.skipped:
            chain.add_message_keys(decryption.skipped)
        chain.chain_key = decryption.chain_key
        chain.index = decryption.chain_index
    if state.pending_pre_key is not None:  # answered: its messages are plain ones from now on
        _PREKEY_HEADERS.pop(_prekey_header_key(state, state.pending_pre_key), None)
        state.pending_pre_key = None


def _decryption_failure(failures: list[SignalProtocolError]) -> InvalidMessageError:
    """libsignal reports any failed decryption as InvalidMessage; keep "bad MAC" visible."""
    if all(isinstance(failure, InvalidMacError) for failure in failures):
        return InvalidMacError("MAC verification failed")
    return InvalidMessageError("decryption failed")
