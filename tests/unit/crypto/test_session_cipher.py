"""Sessions between two in-process parties: round trips, limits, failures that change nothing."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from tidings.crypto import (
    CiphertextMessageType,
    DuplicateMessageError,
    IdentityKeyPair,
    InvalidKyberPreKeyIdError,
    InvalidMacError,
    InvalidMessageError,
    InvalidPreKeyIdError,
    InvalidSignatureError,
    InvalidSignedPreKeyIdError,
    LegacyCiphertextVersionError,
    NoSessionError,
    PreKeyBundle,
    PreKeySignalMessage,
    SessionRecord,
    SignalMessage,
    SignalProtocolError,
    UnrecognizedMessageVersionError,
    UntrustedIdentityError,
    message_decrypt,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)
from tidings.crypto.ratchet import next_chain_key
from tidings.crypto.session import (
    ARCHIVED_STATES_MAX_LENGTH,
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_RECEIVER_CHAINS,
    SessionState,
)

from .parties import Party

VERSIONS = pytest.mark.parametrize(("kyber", "version"), [(True, 4), (False, 3)])


def state_of(party: Party, other: Party) -> SessionState:
    data = party.stored(other)
    assert data is not None
    state = SessionRecord.deserialize(data).session_state()
    assert state is not None
    return state


def established(alice: Party, bob: Party, kyber: bool = True) -> None:
    """A session both sides have used (Alice's PreKey message answered)."""
    alice.start_session(bob, kyber=kyber)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"


def advance_sender(party: Party, other: Party, to_index: int) -> None:
    """Move ``party``'s sending chain forward without sending (messages lost in transit)."""
    record = SessionRecord.deserialize(party.stored(other) or b"")
    state = record.session_state()
    assert state is not None and state.sender_chain is not None
    chain = state.sender_chain
    assert chain.index <= to_index
    while chain.index < to_index:
        chain.chain_key = next_chain_key(chain.chain_key)
        chain.index += 1
    party.sessions.store_session(other.address, record)


class TestRoundTrips:
    @VERSIONS
    def test_alternating(self, alice: Party, bob: Party, kyber: bool, version: int) -> None:
        alice.start_session(bob, kyber=kyber)
        first = alice.encrypt(bob, b"m0")
        assert first[0] == CiphertextMessageType.PREKEY
        assert first[1] == (version << 4) | 4  # 0x44 / 0x34
        assert bob.decrypt(alice, first) == b"m0"
        for i in range(1, 12):
            sender, receiver = (alice, bob) if i % 2 == 0 else (bob, alice)
            wire = sender.encrypt(receiver, b"m%d" % i)
            assert wire[0] == CiphertextMessageType.WHISPER
            assert wire[1] == (version << 4) | 4
            assert receiver.decrypt(sender, wire) == b"m%d" % i
        for party, other in ((alice, bob), (bob, alice)):
            record = SessionRecord.deserialize(party.stored(other) or b"")
            assert record.session_version() == version
            assert record.remote_registration_id() == other.registration_id
            assert record.local_registration_id() == party.registration_id

    @VERSIONS
    def test_one_way(self, alice: Party, bob: Party, kyber: bool, version: int) -> None:
        alice.start_session(bob, kyber=kyber)
        for i in range(30):
            wire = alice.encrypt(bob, b"x" * i)
            # PreKey messages until Bob answers
            assert wire[0] == CiphertextMessageType.PREKEY
            assert bob.decrypt(alice, wire) == b"x" * i
        assert alice.decrypt(bob, bob.encrypt(alice, b"ack")) == b"ack"
        assert alice.encrypt(bob, b"now whisper")[0] == CiphertextMessageType.WHISPER

    def test_prekey_message_fields(self, alice: Party, bob: Party) -> None:
        bundle = bob.bundle()
        process_prekey_bundle(bundle, bob.address, alice.sessions, alice.identities)
        message = message_encrypt(b"hi", bob.address, alice.sessions, alice.identities)
        assert isinstance(message, PreKeySignalMessage)
        parsed = PreKeySignalMessage.deserialize(message.serialize())
        assert parsed.serialize() == message.serialize()
        assert parsed.registration_id == alice.registration_id
        assert parsed.pre_key_id == bundle.pre_key_id
        assert parsed.signed_pre_key_id == bundle.signed_pre_key_id
        assert parsed.kyber_pre_key_id == bundle.kyber_pre_key_id
        assert parsed.kyber_ciphertext is not None and len(parsed.kyber_ciphertext) == 1569
        assert parsed.identity_key == alice.identity.identity_key
        assert parsed.message.counter == 0
        # Bob uses up the one-time prekey and marks the Kyber prekey used.
        assert bundle.pre_key_id is not None and bundle.kyber_pre_key_id is not None
        assert (
            message_decrypt(
                parsed,
                alice.address,
                bob.sessions,
                bob.identities,
                bob.prekeys,
                bob.signed_prekeys,
                bob.kyber_prekeys,
            )
            == b"hi"
        )
        assert bundle.pre_key_id not in bob.prekeys.all_pre_key_ids()
        assert bundle.kyber_pre_key_id in bob.kyber_prekeys.used

    def test_bundle_without_one_time_prekey(self, alice: Party, bob: Party) -> None:
        process_prekey_bundle(
            bob.bundle(one_time=False), bob.address, alice.sessions, alice.identities
        )
        message = message_encrypt(b"hi", bob.address, alice.sessions, alice.identities)
        assert isinstance(message, PreKeySignalMessage) and message.pre_key_id is None
        assert bob.decrypt(alice, b"\x03" + message.serialize()) == b"hi"

    def test_retransmitted_prekey_messages_reuse_the_session(
        self, alice: Party, bob: Party
    ) -> None:
        alice.start_session(bob)
        first, second = alice.encrypt(bob, b"1"), alice.encrypt(bob, b"2")
        assert bob.decrypt(alice, second) == b"2"
        # The one-time prekey is gone, but the session with that base key is found.
        assert bob.decrypt(alice, first) == b"1"
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, first)

    def test_out_of_order_within_limits(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wires = [(i, alice.encrypt(bob, b"%d" % i)) for i in range(200)]
        random.Random(7).shuffle(wires)
        for i, wire in wires:
            assert bob.decrypt(alice, wire) == b"%d" % i
        assert not state_of(bob, alice).receiver_chains[-1].message_keys

    def test_delayed_messages_from_an_earlier_chain(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        late = alice.encrypt(bob, b"late")
        for i in range(3):  # three ratchet turns; the old chain is still kept
            assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % i)) == b"a%d" % i
            assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % i)) == b"b%d" % i
        assert bob.decrypt(alice, late) == b"late"

    def test_empty_and_block_sized_plaintexts(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        for size in (0, 1, 15, 16, 17, 32, 1000):
            assert bob.decrypt(alice, alice.encrypt(bob, bytes(size))) == bytes(size)

    def test_session_with_own_other_device(self) -> None:
        identity = IdentityKeyPair.generate()
        phone, laptop = Party("me", 1, identity), Party("me", 2, identity)
        established(phone, laptop)
        advance_sender(phone, laptop, MAX_FORWARD_JUMPS + 10)
        # no forward-jump limit with oneself, as in libsignal
        assert laptop.decrypt(phone, phone.encrypt(laptop, b"far")) == b"far"


class TestLimits:
    def test_forward_jump_limit(self, alice: Party, bob: Party) -> None:
        established(alice, bob)  # Bob's receiver chain for Alice's current key is at 1
        assert bob.decrypt(alice, alice.encrypt(bob, b"1")) == b"1"
        # Bob's chain is at 2 now: counter 2 + 25,000 is the farthest it accepts.
        advance_sender(alice, bob, 2 + MAX_FORWARD_JUMPS + 1)
        too_far = alice.encrypt(bob, b"too far")
        before = bob.stored(alice)
        with pytest.raises(InvalidMessageError):
            bob.decrypt(alice, too_far)
        assert bob.stored(alice) == before

    def test_largest_jump_is_accepted_and_keeps_2000_keys(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        sender = state_of(alice, bob).sender_chain
        assert sender is not None
        base_key, base_index = sender.chain_key, sender.index

        def encrypt_at(counter: int, text: bytes) -> bytes:
            rec = SessionRecord.deserialize(alice.stored(bob) or b"")
            state = rec.session_state()
            assert state is not None and state.sender_chain is not None
            chain = state.sender_chain
            chain.chain_key, chain.index = base_key, base_index
            while chain.index < counter:
                chain.chain_key = next_chain_key(chain.chain_key)
                chain.index += 1
            alice.sessions.store_session(bob.address, rec)
            return alice.encrypt(bob, text)

        last = base_index + MAX_FORWARD_JUMPS
        assert bob.decrypt(alice, encrypt_at(last, b"far")) == b"far"
        chain = state_of(bob, alice).receiver_chain(
            SignalMessage.deserialize(encrypt_at(last, b"")[1:]).sender_ratchet_key.serialize()
        )
        assert chain is not None and len(chain.message_keys) == MAX_MESSAGE_KEYS
        # The newest 2,000 skipped keys are kept, older ones are gone.
        assert bob.decrypt(alice, encrypt_at(last - MAX_MESSAGE_KEYS, b"kept")) == b"kept"
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, encrypt_at(last - MAX_MESSAGE_KEYS - 1, b"dropped"))

    def test_skipped_keys_bounded(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wires = [alice.encrypt(bob, b"%d" % i) for i in range(MAX_MESSAGE_KEYS + 100)]
        assert bob.decrypt(alice, wires[-1]) == b"%d" % (len(wires) - 1)
        chain = state_of(bob, alice).receiver_chains[-1]
        assert len(chain.message_keys) == MAX_MESSAGE_KEYS
        for i, wire in enumerate(wires[:-1]):
            if i < 99:
                with pytest.raises(DuplicateMessageError):
                    bob.decrypt(alice, wire)
            else:
                assert bob.decrypt(alice, wire) == b"%d" % i

    def test_receiver_chains_bounded(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        stale = alice.encrypt(bob, b"stale")
        for i in range(MAX_RECEIVER_CHAINS + 2):
            assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % i)) == b"a%d" % i
            assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % i)) == b"b%d" % i
        assert len(state_of(bob, alice).receiver_chains) == MAX_RECEIVER_CHAINS
        assert len(state_of(alice, bob).receiver_chains) == MAX_RECEIVER_CHAINS
        before = bob.stored(alice)
        with pytest.raises(InvalidMessageError):  # its chain was dropped
            bob.decrypt(alice, stale)
        assert bob.stored(alice) == before

    def test_previous_states_bounded(self, alice: Party, bob: Party) -> None:
        for _ in range(ARCHIVED_STATES_MAX_LENGTH + 5):
            alice.start_session(bob)
        record = SessionRecord.deserialize(alice.stored(bob) or b"")
        assert record.previous_session_count() == ARCHIVED_STATES_MAX_LENGTH
        assert SessionRecord.deserialize(record.serialize()).serialize() == record.serialize()

    def test_archived_session_still_decrypts_and_is_promoted(
        self, alice: Party, bob: Party
    ) -> None:
        alice.start_session(bob)
        old = alice.encrypt(bob, b"from the first session")
        old_base = SessionRecord.deserialize(alice.stored(bob) or b"").alice_base_key()
        alice.start_session(bob)  # e.g. Alice refetched Bob's keys; the first one is archived
        assert bob.decrypt(alice, old) == b"from the first session"
        reply = bob.encrypt(alice, b"reply in the first session")
        assert alice.decrypt(bob, reply) == b"reply in the first session"
        record = SessionRecord.deserialize(alice.stored(bob) or b"")
        assert record.alice_base_key() == old_base
        assert record.previous_session_count() == 1
        assert alice.encrypt(bob, b"x")[0] == CiphertextMessageType.WHISPER

    def test_prekey_message_for_an_archived_session(self, alice: Party, bob: Party) -> None:
        alice.start_session(bob)
        first_a, first_b = alice.encrypt(bob, b"1a"), alice.encrypt(bob, b"1b")
        assert bob.decrypt(alice, first_a) == b"1a"
        alice.start_session(bob)
        assert bob.decrypt(alice, alice.encrypt(bob, b"2")) == b"2"  # Bob archives session 1
        assert bob.decrypt(alice, first_b) == b"1b"  # found in the archive, made current
        record = SessionRecord.deserialize(bob.stored(alice) or b"")
        assert (
            record.alice_base_key()
            == PreKeySignalMessage.deserialize(first_b[1:]).base_key.serialize()
        )
        assert record.previous_session_count() == 1

    def test_archived_states_are_tried_for_whisper_messages(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        old = alice.encrypt(bob, b"old session")
        assert bob.decrypt(alice, old) == b"old session"
        late = alice.encrypt(bob, b"late")
        alice.start_session(bob)
        assert bob.decrypt(alice, alice.encrypt(bob, b"new session")) == b"new session"
        before = bob.stored(alice)
        with pytest.raises(DuplicateMessageError):  # found in the archived state
            bob.decrypt(alice, old)
        forged = bytearray(late)
        forged[-1] ^= 1
        with pytest.raises(InvalidMacError):  # fails with every state
            bob.decrypt(alice, bytes(forged))
        assert bob.stored(alice) == before
        assert bob.decrypt(alice, late) == b"late"  # the archived state becomes current

    def test_stale_unacknowledged_session(self, alice: Party, bob: Party) -> None:
        alice.start_session(bob, now=1_000_000)
        alice.encrypt(bob, b"ok", now=1_000_000 + 30 * 86400)
        before = alice.stored(bob)
        with pytest.raises(NoSessionError):
            alice.encrypt(bob, b"too late", now=1_000_001 + 30 * 86400)
        assert alice.stored(bob) == before
        record = SessionRecord.deserialize(before or b"")
        assert record.has_usable_sender_chain(1_000_000 + 30 * 86400)
        assert not record.has_usable_sender_chain(1_000_001 + 30 * 86400)


class TestFailuresChangeNothing:
    def _snapshot(self, party: Party, other: Party) -> tuple[object, ...]:
        return (
            party.stored(other),
            party.identities.get_identity(other.address),
            sorted(party.prekeys.all_pre_key_ids()),
            sorted(party.kyber_prekeys.used),
        )

    def test_tampered_mac(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wire = bytearray(alice.encrypt(bob, b"secret"))
        wire[-1] ^= 1
        before = self._snapshot(bob, alice)
        with pytest.raises(InvalidMacError):
            bob.decrypt(alice, bytes(wire))
        assert self._snapshot(bob, alice) == before
        wire[-1] ^= 1
        assert bob.decrypt(alice, bytes(wire)) == b"secret"

    def test_tampered_ciphertext(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wire = bytearray(alice.encrypt(bob, b"secret"))
        wire[-12] ^= 1  # inside the AES ciphertext
        before = self._snapshot(bob, alice)
        with pytest.raises(InvalidMessageError):
            bob.decrypt(alice, bytes(wire))
        assert self._snapshot(bob, alice) == before

    def test_tampered_prekey_message(self, alice: Party, bob: Party) -> None:
        alice.start_session(bob)
        wire = bytearray(alice.encrypt(bob, b"secret"))
        wire[-1] ^= 1  # the embedded SignalMessage's MAC
        before = self._snapshot(bob, alice)
        with pytest.raises(InvalidMessageError):
            bob.decrypt(alice, bytes(wire))
        assert self._snapshot(bob, alice) == before
        wire[-1] ^= 1
        assert bob.decrypt(alice, bytes(wire)) == b"secret"

    @pytest.mark.parametrize(
        ("version_byte", "error"),
        [
            (0x24, LegacyCiphertextVersionError),
            (0x14, LegacyCiphertextVersionError),
            (0x54, UnrecognizedMessageVersionError),
            (0xF4, UnrecognizedMessageVersionError),
        ],
    )
    def test_wrong_version_byte(
        self, alice: Party, bob: Party, version_byte: int, error: type[Exception]
    ) -> None:
        established(alice, bob)
        wire = alice.encrypt(bob, b"m")
        with pytest.raises(error):
            SignalMessage.deserialize(bytes((version_byte,)) + wire[2:])
        before = self._snapshot(bob, alice)
        with pytest.raises(error):
            bob.decrypt(alice, wire[:1] + bytes((version_byte,)) + wire[2:])
        assert self._snapshot(bob, alice) == before

    def test_v3_message_into_v4_session(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wire = alice.encrypt(bob, b"m")
        before = self._snapshot(bob, alice)
        with pytest.raises(InvalidMessageError):  # the version byte is covered by the MAC
            bob.decrypt(alice, wire[:1] + b"\x34" + wire[2:])
        assert self._snapshot(bob, alice) == before

    @pytest.mark.parametrize("cut", [1, 2, 5, 9, 20, 40])
    def test_truncated(self, alice: Party, bob: Party, cut: int) -> None:
        established(alice, bob)
        wire = alice.encrypt(bob, b"some message")
        before = self._snapshot(bob, alice)
        with pytest.raises(SignalProtocolError):
            bob.decrypt(alice, wire[:-cut])
        with pytest.raises(InvalidMessageError):
            SignalMessage.deserialize(wire[1 : 1 + cut])
        assert self._snapshot(bob, alice) == before

    @pytest.mark.parametrize(
        "garbage",
        [
            b"",
            b"\x44",
            b"\x44" + bytes(8),
            b"\x44\xff\xff\xff" + bytes(8),
            b"\x44\x0a\x21" + bytes(40),
        ],
    )
    def test_garbage(self, alice: Party, bob: Party, garbage: bytes) -> None:
        established(alice, bob)
        before = self._snapshot(bob, alice)
        for kind in (b"\x02", b"\x03"):
            with pytest.raises(SignalProtocolError):
                bob.decrypt(alice, kind + garbage)
        with pytest.raises(InvalidMessageError):
            PreKeySignalMessage.deserialize(garbage or b"")
        assert self._snapshot(bob, alice) == before

    def test_replay(self, alice: Party, bob: Party) -> None:
        alice.start_session(bob)
        prekey_wire = alice.encrypt(bob, b"first")
        assert bob.decrypt(alice, prekey_wire) == b"first"
        assert alice.decrypt(bob, bob.encrypt(alice, b"ack")) == b"ack"
        wire = alice.encrypt(bob, b"second")
        assert bob.decrypt(alice, wire) == b"second"
        before = self._snapshot(bob, alice)
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, wire)
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, prekey_wire)
        assert self._snapshot(bob, alice) == before

    def test_forged_signed_prekey_signature(self, alice: Party, bob: Party) -> None:
        bundle = bob.bundle()
        forged = bytearray(bundle.signed_pre_key_signature)
        forged[10] ^= 1
        bad = _replace(bundle, signed_pre_key_signature=bytes(forged))
        with pytest.raises(InvalidSignatureError):
            process_prekey_bundle(bad, bob.address, alice.sessions, alice.identities)
        assert alice.stored(bob) is None
        assert alice.identities.get_identity(bob.address) is None
        # signed by someone else
        other = IdentityKeyPair.generate()
        resigned = _replace(
            bundle,
            signed_pre_key_signature=other.calculate_signature(
                bundle.signed_pre_key_public.serialize()
            ),
        )
        with pytest.raises(InvalidSignatureError):
            process_prekey_bundle(resigned, bob.address, alice.sessions, alice.identities)
        assert alice.stored(bob) is None

    def test_forged_kyber_prekey_signature(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        bundle = bob.bundle()
        assert bundle.kyber_pre_key_signature is not None
        forged = bytearray(bundle.kyber_pre_key_signature)
        forged[0] ^= 1
        before = self._snapshot(alice, bob)
        with pytest.raises(InvalidSignatureError):
            process_prekey_bundle(
                _replace(bundle, kyber_pre_key_signature=bytes(forged)),
                bob.address,
                alice.sessions,
                alice.identities,
            )
        assert self._snapshot(alice, bob) == before

    def test_changed_identity_key(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        # Bob reinstalls: new identity, same address.
        new_bob = Party("bob")
        alice_before = self._snapshot(alice, bob)
        with pytest.raises(UntrustedIdentityError) as info:
            process_prekey_bundle(new_bob.bundle(), bob.address, alice.sessions, alice.identities)
        assert info.value.name == "bob"
        assert self._snapshot(alice, bob) == alice_before
        # An impostor's PreKey message under Alice's address is refused by Bob.
        impostor = Party("alice")
        impostor.start_session(bob)
        bob_before = self._snapshot(bob, alice)
        with pytest.raises(UntrustedIdentityError):
            bob.decrypt(alice, impostor.encrypt(bob, b"trust me"))
        assert self._snapshot(bob, alice) == bob_before
        # Once the user accepts the new key, the session can be replaced.
        alice.identities.save_identity(bob.address, new_bob.identity.identity_key)
        before = alice.stored(bob)
        with pytest.raises(UntrustedIdentityError):  # the old session's identity
            alice.encrypt(bob, b"to the old bob")
        assert alice.stored(bob) == before

    def test_untrusted_identity_on_a_whisper_message(self, alice: Party, bob: Party) -> None:
        established(alice, bob)
        wire = alice.encrypt(bob, b"m")
        bob.identities.save_identity(alice.address, IdentityKeyPair.generate().identity_key)
        before = bob.stored(alice)
        with pytest.raises(UntrustedIdentityError):
            bob.decrypt(alice, wire)
        assert bob.stored(alice) == before
        bob.identities.save_identity(alice.address, alice.identity.identity_key)
        assert bob.decrypt(alice, wire) == b"m"

    def test_missing_prekeys(self, alice: Party, bob: Party) -> None:
        for drop, error in (
            ("prekeys", InvalidPreKeyIdError),
            ("signed_prekeys", InvalidSignedPreKeyIdError),
            ("kyber_prekeys", InvalidKyberPreKeyIdError),
        ):
            sender = Party("alice")
            sender.start_session(bob)
            wire = sender.encrypt(bob, b"m")
            setattr(bob, drop, type(getattr(bob, drop))())
            before = self._snapshot(bob, sender)
            with pytest.raises(error):
                bob.decrypt(sender, wire)
            assert self._snapshot(bob, sender) == before

    def test_no_session(self, alice: Party, bob: Party) -> None:
        with pytest.raises(NoSessionError):
            alice.encrypt(bob, b"m")
        bob2 = Party("bob")
        alice.start_session(bob2)
        wire = alice.encrypt(bob2, b"m")
        with pytest.raises(NoSessionError):
            message_decrypt_signal(
                PreKeySignalMessage.deserialize(wire[1:]).message,
                alice.address,
                bob.sessions,
                bob.identities,
            )
        bob.sessions.store_session(alice.address, SessionRecord.new_fresh())
        with pytest.raises(NoSessionError):
            message_decrypt_signal(
                PreKeySignalMessage.deserialize(wire[1:]).message,
                alice.address,
                bob.sessions,
                bob.identities,
            )


def _replace(bundle: PreKeyBundle, **changes: Any) -> PreKeyBundle:
    return dataclasses.replace(bundle, **changes)
