"""Property: over any send/drop/reorder/replay schedule, every delivered message decrypts once.

The only messages that may not decrypt are those whose sending chain the receiver already saw
and has since dropped (it keeps 5 receiver chains, as libsignal); the oracle predicts exactly
those from the ratchet key each message carries. Every failure leaves the stored state as it was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.crypto import (
    DuplicateMessageError,
    InvalidMessageError,
    PreKeySignalMessage,
    SessionRecord,
    SignalMessage,
    SignalProtocolError,
)

from .parties import Party


@dataclass
class InFlight:
    wire: bytes
    plaintext: bytes
    ratchet_key: bytes
    delivered: bool = False


@dataclass
class Direction:
    sender: Party
    receiver: Party
    queue: list[InFlight] = field(default_factory=list)
    seen_ratchet_keys: set[bytes] = field(default_factory=set)


def ratchet_key_of(wire: bytes) -> bytes:
    body = wire[1:]
    message = (
        PreKeySignalMessage.deserialize(body).message
        if wire[0] == 3
        else SignalMessage.deserialize(body)
    )
    return message.sender_ratchet_key.serialize()


def receiver_keeps_chain(direction: Direction, ratchet_key: bytes) -> bool:
    data = direction.receiver.stored(direction.sender)
    if data is None:
        return False
    state = SessionRecord.deserialize(data).session_state()
    return state is not None and state.receiver_chain(ratchet_key) is not None


actions = st.lists(
    st.tuples(
        st.sampled_from(["send", "send", "deliver", "deliver", "drop", "replay", "exchange"]),
        st.booleans(),  # which direction
        st.integers(min_value=0, max_value=1_000),  # which message
    ),
    min_size=10,
    max_size=80,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=actions, kyber=st.booleans())
def test_every_delivered_message_decrypts_exactly_once(
    schedule: list[tuple[str, bool, int]], kyber: bool
) -> None:
    alice, bob = Party("alice"), Party("bob")
    alice.start_session(bob, kyber=kyber)
    directions = {True: Direction(alice, bob), False: Direction(bob, alice)}
    counter = 0
    for action, which, pick in schedule:
        direction = directions[which]
        if action == "exchange":  # a quick round trip: both sides turn the ratchet
            for way in (directions[which], directions[not which]):
                if way.sender.stored(way.receiver) is None:
                    break
                counter += 1
                plaintext = b"message %d" % counter
                wire = way.sender.encrypt(way.receiver, plaintext)
                assert way.receiver.decrypt(way.sender, wire) == plaintext
                way.seen_ratchet_keys.add(ratchet_key_of(wire))
                way.queue.append(InFlight(wire, plaintext, ratchet_key_of(wire), delivered=True))
            continue
        if action == "send":
            if direction.sender.stored(direction.receiver) is None:
                continue  # Bob cannot write before Alice's first message arrives
            counter += 1
            plaintext = b"message %d" % counter
            wire = direction.sender.encrypt(direction.receiver, plaintext)
            direction.queue.append(InFlight(wire, plaintext, ratchet_key_of(wire)))
            continue
        pending = [m for m in direction.queue if not m.delivered]
        done = [m for m in direction.queue if m.delivered]
        if action == "drop" and pending:
            direction.queue.remove(pending[pick % len(pending)])
        elif action == "deliver" and pending:
            message = pending[pick % len(pending)]
            lost_chain = message.ratchet_key in direction.seen_ratchet_keys and not (
                receiver_keeps_chain(direction, message.ratchet_key)
            )
            before = direction.receiver.stored(direction.sender)
            if lost_chain:
                try:
                    direction.receiver.decrypt(direction.sender, message.wire)
                except InvalidMessageError:
                    assert direction.receiver.stored(direction.sender) == before
                else:
                    raise AssertionError("a message from a dropped chain decrypted")
            else:
                got = direction.receiver.decrypt(direction.sender, message.wire)
                assert got == message.plaintext
                direction.seen_ratchet_keys.add(message.ratchet_key)
            message.delivered = True
        elif action == "replay" and done:
            message = done[pick % len(done)]
            before = direction.receiver.stored(direction.sender)
            try:
                direction.receiver.decrypt(direction.sender, message.wire)
            except (DuplicateMessageError, InvalidMessageError):
                pass
            else:
                raise AssertionError("a replayed message decrypted twice")
            assert direction.receiver.stored(direction.sender) == before


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    held=st.integers(min_value=1, max_value=6),
    turns=st.lists(st.booleans(), max_size=9),
    order=st.randoms(use_true_random=False),
)
def test_messages_held_across_ratchet_turns(
    held: int, turns: list[bool], order: random.Random
) -> None:
    """Messages held back while the ratchet turns decrypt until their chain is dropped."""
    alice, bob = Party("alice"), Party("bob")
    alice.start_session(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
    ways = {True: (alice, bob), False: (bob, alice)}
    kept: list[tuple[bytes, bytes]] = [
        (alice.encrypt(bob, b"held %d" % i), b"held %d" % i) for i in range(held)
    ]
    chain = ratchet_key_of(kept[0][0])
    for which in turns:
        for sender, receiver in (ways[which], ways[not which]):
            assert receiver.decrypt(sender, sender.encrypt(receiver, b"turn")) == b"turn"
    order.shuffle(kept)
    survives = receiver_keeps_chain(Direction(alice, bob), chain)
    for wire, plaintext in kept:
        before = bob.stored(alice)
        if survives:
            assert bob.decrypt(alice, wire) == plaintext
        else:
            try:
                bob.decrypt(alice, wire)
            except InvalidMessageError:
                assert bob.stored(alice) == before
            else:
                raise AssertionError("a message from a dropped chain decrypted")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    prekey=st.booleans(),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=3,
    ),
    cut=st.integers(min_value=0, max_value=3),
)
def test_mangled_messages_fail_cleanly(
    prekey: bool, flips: list[tuple[int, int]], cut: int
) -> None:
    """Corruption raises a SignalProtocolError and changes nothing, or is harmless.

    As in libsignal, a few bits are not authenticated: the low nibble of the version byte and,
    in a PreKey message, envelope fields such as the registration id. Those may change and the
    message still decrypts, but only ever to its original plaintext.
    """
    alice, bob = Party("alice"), Party("bob")
    alice.start_session(bob)
    if not prekey:
        assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
        assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"
    wire = alice.encrypt(bob, b"the message")
    mangled = bytearray(wire)
    for position, mask in flips:
        mangled[1 + position % (len(mangled) - 1)] ^= mask
    if cut:
        del mangled[-cut:]
    before = (bob.stored(alice), bob.prekeys.all_pre_key_ids(), set(bob.kyber_prekeys.used))
    try:
        plaintext = bob.decrypt(alice, bytes(mangled))
    except SignalProtocolError:
        after = (bob.stored(alice), bob.prekeys.all_pre_key_ids(), set(bob.kyber_prekeys.used))
        assert after == before
        assert bob.decrypt(alice, wire) == b"the message"
    else:
        assert plaintext == b"the message"
        if not prekey:
            assert len(mangled) == len(wire)
            assert mangled[0] == wire[0] and mangled[1] >> 4 == wire[1] >> 4
            assert mangled[2:] == wire[2:]
