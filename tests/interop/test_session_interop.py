"""1:1 sessions (X3DH v3, PQXDH v4, Double Ratchet) against real libsignal.

libsignal 0.72.1 speaks v3 (a bundle without Kyber) and v4; 0.90.0 needs Kyber, so v4 only.
Both sides initiate. Each conversation carries 1,000 messages in a seeded random interleaving,
with reordering and drops; counter gaps beyond the limit are rejected as libsignal rejects them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from libsignal_peer import LibsignalPeer, b64, unb64
from ours import PREKEY, WHISPER, OurDevice

from tidings.crypto import DuplicateMessageError, InvalidMessageError, ProtocolAddress
from tidings.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

pytestmark = pytest.mark.interop

CASES = [
    pytest.param("0.72.1", False, id="libsignal-0.72.1-v3"),
    pytest.param("0.72.1", True, id="libsignal-0.72.1-v4"),
    pytest.param("0.90.0", True, id="libsignal-0.90.0-v4"),
]

_counter = iter(range(10**9))


@dataclass
class Conversation:
    peer: LibsignalPeer
    ours: OurDevice
    lib_name: str
    lib_address: ProtocolAddress
    version: int

    def lib_json(self) -> dict[str, object]:
        return {"name": self.lib_address.name, "device_id": self.lib_address.device_id}

    def lib_encrypt(self, plaintexts: list[bytes], skip: int = 0) -> list[dict[str, Any]]:
        res = self.peer.call(
            "encrypt",
            party=self.lib_name,
            address=self.ours.json(),
            plaintexts=[b64(p) for p in plaintexts],
            skip=skip,
        )
        return list(res["messages"])

    def lib_decrypt(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        res = self.peer.call(
            "decrypt", party=self.lib_name, address=self.ours.json(), messages=messages
        )
        return list(res["results"])


def _start(peer: LibsignalPeer, kyber: bool, we_initiate: bool) -> Conversation:
    n = next(_counter)
    lib_name = f"lib-{n}"
    peer.call("new_party", party=lib_name, device_id=1)
    ours = OurDevice(f"ours-{n}", 2)
    conv = Conversation(peer, ours, lib_name, ProtocolAddress(lib_name, 1), 4 if kyber else 3)
    if we_initiate:
        bundle = peer.call("make_bundle", party=lib_name, kyber=kyber)
        ours.process_bundle(conv.lib_address, bundle)
    else:
        peer.call(
            "process_bundle", party=lib_name, address=ours.json(), bundle=ours.bundle(kyber=kyber)
        )
    return conv


def _version_of(message: dict[str, Any]) -> int:
    return int(unb64(message["body"])[0] >> 4)


@dataclass
class _InFlight:
    index: int
    message: dict[str, Any]
    plaintext: bytes
    age: int = 0


@dataclass
class _Link:
    """Messages in flight in one direction."""

    queue: list[_InFlight] = field(default_factory=list)
    dropped: int = 0
    delivered: int = 0
    reordered: int = 0


def _pick_deliveries(rng: random.Random, link: _Link, first_index: int) -> list[_InFlight]:
    """Deliver some messages now (shuffled), drop ~4%, hold the rest for up to 3 rounds."""
    now: list[_InFlight] = []
    held: list[_InFlight] = []
    for item in link.queue:
        roll = rng.random()
        if item.index != first_index and roll < 0.04:
            link.dropped += 1
        elif item.age >= 3 or roll < 0.6:
            now.append(item)
        else:
            item.age += 1
            held.append(item)
    link.queue = held
    before = [i.index for i in now]
    rng.shuffle(now)
    link.reordered += sum(1 for a, b in zip(before, (i.index for i in now), strict=True) if a != b)
    link.delivered += len(now)
    return now


def _chat(conv: Conversation, seed: int, total: int, we_initiate: bool) -> tuple[_Link, _Link]:
    rng = random.Random(seed)
    to_lib, to_us = _Link(), _Link()
    sent = 0
    # The initiator speaks first; the responder can answer once it has a session.
    lib_ready = not we_initiate
    ours_ready = we_initiate
    first_to_lib = 0 if we_initiate else -1
    first_to_us = 0 if not we_initiate else -1
    rounds = 0
    while sent < total or to_lib.queue or to_us.queue:
        rounds += 1
        assert rounds < 5000
        # Our sends.
        if ours_ready and sent < total:
            for _ in range(min(rng.randint(0, 4), total - sent)):
                pt = f"ours-{sent}-".encode() + rng.randbytes(rng.randrange(0, 160))
                msg = conv.ours.encrypt(conv.lib_address, pt)
                assert _version_of(msg) == conv.version
                to_lib.queue.append(_InFlight(sent, msg, pt))
                sent += 1
        # libsignal's sends (one batch).
        if lib_ready and sent < total:
            k = min(rng.randint(0, 4), total - sent)
            pts = [
                f"lib-{sent + i}-".encode() + rng.randbytes(rng.randrange(0, 160)) for i in range(k)
            ]
            for i, (pt, msg) in enumerate(zip(pts, conv.lib_encrypt(pts), strict=True)):
                assert _version_of(msg) == conv.version
                to_us.queue.append(_InFlight(sent + i, msg, pt))
            sent += k
        # Deliveries to libsignal (one batch).
        batch = _pick_deliveries(rng, to_lib, first_to_lib)
        if batch:
            results = conv.lib_decrypt([item.message for item in batch])
            for item, res in zip(batch, results, strict=True):
                assert res["ok"], (item.index, item.message["type"], res)
                assert unb64(res["plaintext"]) == item.plaintext
            lib_ready = True
        # Deliveries to us.
        for item in _pick_deliveries(rng, to_us, first_to_us):
            assert conv.ours.decrypt(conv.lib_address, item.message) == item.plaintext, item.index
            ours_ready = True
    return to_lib, to_us


@pytest.mark.parametrize(("version", "kyber"), CASES)
@pytest.mark.parametrize("we_initiate", [True, False], ids=["we-initiate", "libsignal-initiates"])
def test_thousand_messages_reordered_and_dropped(
    peers: Callable[[str], LibsignalPeer], version: str, kyber: bool, we_initiate: bool
) -> None:
    conv = _start(peers(version), kyber, we_initiate)
    seed = (1 if kyber else 0) + (2 if we_initiate else 0) + (4 if version == "0.90.0" else 0)
    to_lib, to_us = _chat(conv, 1000 + seed, 1000, we_initiate)
    assert to_lib.delivered + to_lib.dropped + to_us.delivered + to_us.dropped == 1000
    assert to_lib.dropped > 0 and to_us.dropped > 0
    assert to_lib.reordered > 0 and to_us.reordered > 0
    assert min(to_lib.delivered, to_us.delivered) > 300


def _prekey_then_whisper(conv: Conversation, we_initiate: bool) -> None:
    """The initiator's messages are PreKey messages until the first answer arrives."""
    if we_initiate:
        first = conv.ours.encrypt(conv.lib_address, b"hello")
        assert first["type"] == PREKEY
        [res] = conv.lib_decrypt([first])
        assert res["ok"], res
        [answer] = conv.lib_encrypt([b"hi"])
        assert answer["type"] == WHISPER
        assert conv.ours.decrypt(conv.lib_address, answer) == b"hi"
        assert conv.ours.encrypt(conv.lib_address, b"again")["type"] == WHISPER
    else:
        [first] = conv.lib_encrypt([b"hello"])
        assert first["type"] == PREKEY
        assert conv.ours.decrypt(conv.lib_address, first) == b"hello"
        answer = conv.ours.encrypt(conv.lib_address, b"hi")
        assert answer["type"] == WHISPER
        [res] = conv.lib_decrypt([answer])
        assert res["ok"], res
        assert conv.lib_encrypt([b"again"])[0]["type"] == WHISPER


@pytest.mark.parametrize(("version", "kyber"), CASES)
@pytest.mark.parametrize("we_initiate", [True, False], ids=["we-initiate", "libsignal-initiates"])
def test_message_types_and_versions(
    peers: Callable[[str], LibsignalPeer], version: str, kyber: bool, we_initiate: bool
) -> None:
    conv = _start(peers(version), kyber, we_initiate)
    _prekey_then_whisper(conv, we_initiate)


def _ours_new_chain(conv: Conversation, text: bytes) -> None:
    """libsignal speaks, we answer: our answer opens a new sending chain at counter 0."""
    [m] = conv.lib_encrypt([b"your turn"])
    assert conv.ours.decrypt(conv.lib_address, m) == b"your turn"
    [res] = conv.lib_decrypt([conv.ours.encrypt(conv.lib_address, text)])
    assert res["ok"], res


def _lib_new_chain(conv: Conversation, text: bytes) -> None:
    """We speak, libsignal answers: its answer opens a new sending chain at counter 0."""
    [res] = conv.lib_decrypt([conv.ours.encrypt(conv.lib_address, b"your turn")])
    assert res["ok"], res
    [m] = conv.lib_encrypt([text])
    assert conv.ours.decrypt(conv.lib_address, m) == text


# What libsignal says when no session state can decrypt a message (a counter gap beyond the
# limit included); our InvalidMessageError carries the same text.
REJECTED = "decryption failed"
LIMIT = 25_000


@pytest.mark.parametrize("version", ["0.72.1", "0.90.0"])
def test_counter_gap_us_to_libsignal(peers: Callable[[str], LibsignalPeer], version: str) -> None:
    """libsignal, at chain index 1, rejects our counter 1 + 25,001 without committing anything,
    accepts counter 1 + 25,000 (and then the other), and has dropped all but the newest 2,000
    skipped keys."""
    conv = _start(peers(version), True, True)
    _prekey_then_whisper(conv, True)
    _ours_new_chain(conv, b"counter 0")
    held = conv.ours.encrypt(conv.lib_address, b"held back")  # counter 1
    for _ in range(LIMIT - 1):
        conv.ours.encrypt(conv.lib_address, b"")
    edge = conv.ours.encrypt(conv.lib_address, b"edge")  # counter LIMIT + 1
    far = conv.ours.encrypt(conv.lib_address, b"far")  # counter LIMIT + 2
    rejected, accepted, later, old = conv.lib_decrypt([far, edge, far, held])
    assert not rejected["ok"]
    assert str(rejected["error"]["message"]).endswith(REJECTED), rejected["error"]
    assert accepted["ok"] and unb64(accepted["plaintext"]) == b"edge"
    assert later["ok"] and unb64(later["plaintext"]) == b"far"
    assert not old["ok"] and old["error"]["code_name"] == "DuplicatedMessage"


@pytest.mark.parametrize("version", ["0.72.1", "0.90.0"])
def test_counter_gap_libsignal_to_us(peers: Callable[[str], LibsignalPeer], version: str) -> None:
    """The same with libsignal sending: we reject, accept and drop exactly as it does."""
    conv = _start(peers(version), True, False)
    _prekey_then_whisper(conv, False)
    _lib_new_chain(conv, b"counter 0")
    [held] = conv.lib_encrypt([b"held back"])  # counter 1
    edge, far = conv.lib_encrypt([b"edge", b"far"], skip=LIMIT - 1)  # LIMIT + 1, LIMIT + 2
    record = conv.ours.session_store.load_session(conv.lib_address)
    assert record is not None
    before = record.serialize()
    with pytest.raises(InvalidMessageError, match=REJECTED):
        conv.ours.decrypt(conv.lib_address, far)
    record = conv.ours.session_store.load_session(conv.lib_address)
    assert record is not None and record.serialize() == before
    assert conv.ours.decrypt(conv.lib_address, edge) == b"edge"
    assert conv.ours.decrypt(conv.lib_address, far) == b"far"
    with pytest.raises(DuplicateMessageError):
        conv.ours.decrypt(conv.lib_address, held)


@pytest.mark.parametrize("version", ["0.72.1", "0.90.0"])
def test_duplicates_and_tampering_rejected_both_ways(
    peers: Callable[[str], LibsignalPeer], version: str
) -> None:
    conv = _start(peers(version), True, False)
    _prekey_then_whisper(conv, False)
    [m] = conv.lib_encrypt([b"once"])
    assert conv.ours.decrypt(conv.lib_address, m) == b"once"
    with pytest.raises(DuplicateMessageError):
        conv.ours.decrypt(conv.lib_address, m)
    mine = conv.ours.encrypt(conv.lib_address, b"once too")
    first, again = conv.lib_decrypt([mine, mine])
    assert first["ok"] and not again["ok"]
    assert again["error"]["code_name"] == "DuplicatedMessage"
    # A flipped bit in the MAC or body: rejected by both, state intact afterwards.
    [m2] = conv.lib_encrypt([b"intact"])
    body = bytearray(unb64(m2["body"]))
    body[-3] ^= 0x10
    with pytest.raises(InvalidMessageError):
        conv.ours.decrypt(conv.lib_address, {"type": m2["type"], "body": b64(bytes(body))})
    assert conv.ours.decrypt(conv.lib_address, m2) == b"intact"
    mine2 = conv.ours.encrypt(conv.lib_address, b"intact too")
    body = bytearray(unb64(mine2["body"]))
    body[-3] ^= 0x10
    bad, good = conv.lib_decrypt([{"type": mine2["type"], "body": b64(bytes(body))}, mine2])
    assert not bad["ok"] and good["ok"]


@pytest.mark.parametrize("version", ["0.72.1", "0.90.0"])
def test_sender_keys_distributed_over_pairwise_sessions(
    peers: Callable[[str], LibsignalPeer], version: str
) -> None:
    """The real flow: each side's SenderKeyDistributionMessage travels inside a 1:1 message,
    then group messages flow both ways."""
    conv = _start(peers(version), True, True)
    _prekey_then_whisper(conv, True)
    dist = uuid.uuid4()
    my_keys = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(conv.ours.address, dist, my_keys)
    [res] = conv.lib_decrypt([conv.ours.encrypt(conv.lib_address, skdm.serialize())])
    assert res["ok"], res
    conv.peer.call(
        "sk_process", party=conv.lib_name, sender=conv.ours.json(), skdm=res["plaintext"]
    )
    lib_skdm = conv.peer.call(
        "sk_create", party=conv.lib_name, sender=conv.lib_json(), distribution_id=str(dist)
    )["skdm"]
    [wrapped] = conv.lib_encrypt([unb64(lib_skdm)])
    received = conv.ours.decrypt(conv.lib_address, wrapped)
    process_sender_key_distribution_message(
        conv.lib_address, SenderKeyDistributionMessage.deserialize(received), my_keys
    )
    mine = [group_encrypt(my_keys, conv.ours.address, dist, f"g{i}".encode()) for i in range(5)]
    res = conv.peer.call(
        "sk_decrypt",
        party=conv.lib_name,
        sender=conv.ours.json(),
        messages=[b64(m.serialize()) for m in mine],
    )["results"]
    assert [unb64(r["plaintext"]) for r in res] == [f"g{i}".encode() for i in range(5)]
    theirs = conv.peer.call(
        "sk_encrypt",
        party=conv.lib_name,
        sender=conv.lib_json(),
        distribution_id=str(dist),
        plaintexts=[b64(f"h{i}".encode()) for i in range(5)],
    )["messages"]
    assert [group_decrypt(unb64(m), my_keys, conv.lib_address) for m in theirs] == [
        f"h{i}".encode() for i in range(5)
    ]
