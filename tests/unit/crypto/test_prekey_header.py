"""An unanswered session encodes its PreKey message header once: the messages are byte for byte
what encoding every field each time gives, and the kept header goes once the peer answers."""

from __future__ import annotations

import pytest

from tidings.crypto import (
    PreKeySignalMessage,
    SessionRecord,
    message_encrypt,
    protobuf,
    session_cipher,
)
from tidings.crypto.messages import prekey_header

from .parties import Party


def _encoded_field_by_field(message: PreKeySignalMessage) -> bytes:
    """The message as one protobuf of fields 1-8, as libsignal's encoder writes it."""
    return bytes(((message.message_version << 4) | 4,)) + protobuf.encode(
        (
            (1, message.pre_key_id),
            (2, message.base_key.serialize()),
            (3, message.identity_key.serialize()),
            (4, message.message.serialize()),
            (5, message.registration_id),
            (6, message.signed_pre_key_id),
            (7, message.kyber_pre_key_id),
            (8, message.kyber_ciphertext),
        )
    )


def _header_key(alice: Party, bob: Party) -> tuple[object, ...]:
    record = SessionRecord.deserialize(alice.stored(bob) or b"")
    state = record.session_state()
    assert state is not None and state.pending_pre_key is not None
    return session_cipher._prekey_header_key(state, state.pending_pre_key)


@pytest.mark.parametrize("kyber", [True, False])
def test_kept_header_gives_the_same_bytes(alice: Party, bob: Party, kyber: bool) -> None:
    alice.start_session(bob, kyber=kyber)
    sent = [
        message_encrypt(b"m%d" % n, bob.address, alice.sessions, alice.identities) for n in range(3)
    ]
    assert _header_key(alice, bob) in session_cipher._PREKEY_HEADERS
    for message in sent:
        assert isinstance(message, PreKeySignalMessage)
        assert message.serialize() == _encoded_field_by_field(message)
        # the same message built without the kept header, and parsed back
        fresh = PreKeySignalMessage(
            message.message_version,
            message.registration_id,
            message.pre_key_id,
            message.signed_pre_key_id,
            message.kyber_pre_key_id,
            message.kyber_ciphertext,
            message.base_key,
            message.identity_key,
            message.message,
        )
        assert fresh.serialize() == message.serialize()
        again = PreKeySignalMessage.deserialize(message.serialize())
        assert again.kyber_ciphertext == message.kyber_ciphertext
        assert again.message.serialize() == message.message.serialize()
    for n, message in enumerate(sent):
        wire = bytes((3,)) + message.serialize()
        assert bob.decrypt(alice, wire) == b"m%d" % n


def test_header_encodes_large_ids_and_zero_registration() -> None:
    """Multi-byte varints and a zero registration id: the split encoding is still the whole."""
    sender, receiver = Party("s"), Party("r")
    sender.start_session(receiver)
    message = message_encrypt(b"x", receiver.address, sender.sessions, sender.identities)
    assert isinstance(message, PreKeySignalMessage)
    for registration_id, pre_key_id in ((0, None), (16_383, 2**31), (1, 0xFFFFFF)):
        before, after = prekey_header(
            message.message_version,
            registration_id,
            pre_key_id,
            2**24 + 5,
            message.kyber_pre_key_id,
            message.kyber_ciphertext,
            message.base_key,
            message.identity_key,
        )
        built = PreKeySignalMessage(
            message.message_version,
            registration_id,
            pre_key_id,
            2**24 + 5,
            message.kyber_pre_key_id,
            message.kyber_ciphertext,
            message.base_key,
            message.identity_key,
            message.message,
            header=(before, after),
        )
        assert built.serialize() == _encoded_field_by_field(built)


def test_header_is_dropped_once_the_peer_answers(alice: Party, bob: Party) -> None:
    alice.start_session(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
    key = _header_key(alice, bob)
    assert key in session_cipher._PREKEY_HEADERS
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"
    assert key not in session_cipher._PREKEY_HEADERS
    assert alice.encrypt(bob, b"plain")[0] == 2  # a Whisper message from now on


def test_a_new_session_gets_its_own_header(alice: Party, bob: Party) -> None:
    alice.start_session(bob)
    first = message_encrypt(b"a", bob.address, alice.sessions, alice.identities)
    alice.start_session(bob)  # the pending prekey changes: new base key, ciphertext, ids
    second = message_encrypt(b"b", bob.address, alice.sessions, alice.identities)
    assert isinstance(first, PreKeySignalMessage) and isinstance(second, PreKeySignalMessage)
    assert first.base_key.serialize() != second.base_key.serialize()
    assert second.serialize() == _encoded_field_by_field(second)
    assert bob.decrypt(alice, bytes((3,)) + second.serialize()) == b"b"
