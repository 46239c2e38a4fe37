"""Sender Keys against real libsignal (0.72.1 and 0.90.0), in both directions."""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass

import pytest
from libsignal_peer import LibsignalPeer, PeerError, b64, unb64

from tidings.crypto import protobuf
from tidings.crypto.errors import DuplicateMessageError, InvalidMessageError
from tidings.crypto.sender_keys import (
    MAX_FORWARD_JUMPS,
    InMemorySenderKeyStore,
    InvalidSenderKeySignatureError,
    NoSenderKeyStateError,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    _message_key_material,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Addr:
    name: str
    device_id: int

    def json(self) -> dict[str, object]:
        return {"name": self.name, "device_id": self.device_id}


def _party(peer: LibsignalPeer, name: str) -> Addr:
    peer.call("new_party", party=name, device_id=1)
    return Addr(name, 1)


def _messages(rng: random.Random, n: int, tag: str) -> list[bytes]:
    return [f"{tag}-{i}-".encode() + rng.randbytes(rng.randrange(0, 300)) for i in range(n)]


def _node_decrypt(
    peer: LibsignalPeer, party: str, sender: Addr, messages: list[bytes]
) -> list[dict[str, object]]:
    res = peer.call(
        "sk_decrypt", party=party, sender=sender.json(), messages=[b64(m) for m in messages]
    )
    return list(res["results"])


def test_libsignal_sender_to_us_in_order(peer: LibsignalPeer) -> None:
    rng = random.Random(1)
    alice = _party(peer, "sk-l2u-alice")
    dist = uuid.uuid4()
    skdm_bytes = unb64(
        peer.call("sk_create", party=alice.name, sender=alice.json(), distribution_id=str(dist))[
            "skdm"
        ]
    )
    skdm = SenderKeyDistributionMessage.deserialize(skdm_bytes)
    assert skdm.distribution_id == dist
    assert skdm.serialize() == skdm_bytes
    ours = InMemorySenderKeyStore()
    process_sender_key_distribution_message(alice, skdm, ours)
    plaintexts = _messages(rng, 200, "l2u")
    cts = peer.call(
        "sk_encrypt",
        party=alice.name,
        sender=alice.json(),
        distribution_id=str(dist),
        plaintexts=[b64(p) for p in plaintexts],
    )["messages"]
    for pt, ct in zip(plaintexts, cts, strict=True):
        raw = unb64(ct)
        assert raw[0] == 0x33
        assert group_decrypt(raw, ours, alice) == pt


def test_our_sender_to_libsignal_in_order(peer: LibsignalPeer) -> None:
    rng = random.Random(2)
    me = Addr("sk-u2l-me", 1)
    _party(peer, "sk-u2l-bob")
    dist = uuid.uuid4()
    store = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(me, dist, store)
    assert skdm.serialize()[0] == 0x33
    peer.call("sk_process", party="sk-u2l-bob", sender=me.json(), skdm=b64(skdm.serialize()))
    plaintexts = _messages(rng, 200, "u2l")
    cts = [group_encrypt(store, me, dist, p).serialize() for p in plaintexts]
    results = _node_decrypt(peer, "sk-u2l-bob", me, cts)
    assert [unb64(str(r["plaintext"])) for r in results] == plaintexts


def _shuffle_with_drops(
    rng: random.Random, items: list[tuple[int, bytes]], drop: float
) -> list[tuple[int, bytes]]:
    kept = [it for it in items if rng.random() >= drop]
    # Local reordering: swap within windows, plus a few long-distance moves.
    for i in range(len(kept)):
        j = min(len(kept) - 1, i + rng.randrange(0, 8))
        kept[i], kept[j] = kept[j], kept[i]
    for _ in range(len(kept) // 20):
        a, b = rng.randrange(len(kept)), rng.randrange(len(kept))
        kept[a], kept[b] = kept[b], kept[a]
    return kept


def test_reordered_and_dropped_both_ways(peer: LibsignalPeer) -> None:
    rng = random.Random(3)
    dist = uuid.uuid4()
    lib = _party(peer, "sk-ro-lib")
    me = Addr("sk-ro-me", 2)
    my_store = InMemorySenderKeyStore()

    # libsignal -> us
    skdm = unb64(
        peer.call("sk_create", party=lib.name, sender=lib.json(), distribution_id=str(dist))["skdm"]
    )
    process_sender_key_distribution_message(
        lib, SenderKeyDistributionMessage.deserialize(skdm), my_store
    )
    pts = _messages(rng, 400, "ro-l2u")
    cts = [
        unb64(c)
        for c in peer.call(
            "sk_encrypt",
            party=lib.name,
            sender=lib.json(),
            distribution_id=str(dist),
            plaintexts=[b64(p) for p in pts],
        )["messages"]
    ]
    delivered = _shuffle_with_drops(rng, list(enumerate(cts)), 0.1)
    for index, ct in delivered:
        assert group_decrypt(ct, my_store, lib) == pts[index]
    # Replays are duplicates on our side, as on libsignal's.
    index, ct = delivered[len(delivered) // 2]
    with pytest.raises(DuplicateMessageError):
        group_decrypt(ct, my_store, lib)

    # us -> libsignal
    my_skdm = create_sender_key_distribution_message(me, dist, my_store)
    peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(my_skdm.serialize()))
    pts2 = _messages(rng, 400, "ro-u2l")
    cts2 = [group_encrypt(my_store, me, dist, p).serialize() for p in pts2]
    delivered2 = _shuffle_with_drops(rng, list(enumerate(cts2)), 0.1)
    results = _node_decrypt(peer, lib.name, me, [ct for _, ct in delivered2])
    for (index, _), res in zip(delivered2, results, strict=True):
        assert res["ok"], res
        assert unb64(str(res["plaintext"])) == pts2[index]
    dup = _node_decrypt(peer, lib.name, me, [delivered2[0][1]])[0]
    assert not dup["ok"]
    assert dup["error"]["code_name"] == "DuplicatedMessage"  # type: ignore[index]


def _forge_far_message(
    store: InMemorySenderKeyStore, me: Addr, dist: uuid.UUID, jump: int, plaintext: bytes
) -> bytes:
    """Our sender's message ``jump`` iterations ahead, signed with our own signing key
    (the same bytes ``jump`` further group_encrypt calls would produce, minus the signing time)."""
    from tidings.crypto.sender_keys import _aes_cbc_encrypt

    record = store.load_sender_key(me, dist)
    assert record is not None
    state = record.current_state()
    chain = state._chain
    for _ in range(jump):
        chain = chain.next()
    iv, key = _message_key_material(chain.message_seed())
    assert state.signing_private is not None
    return SenderKeyMessage.create(
        state.message_version,
        dist,
        state.chain_id,
        chain.iteration,
        _aes_cbc_encrypt(key, iv, plaintext),
        state.signing_private,
    ).serialize()


def test_forward_jump_limit_matches(peer: LibsignalPeer) -> None:
    dist = uuid.uuid4()
    lib = _party(peer, "sk-jump-lib")
    me = Addr("sk-jump-me", 1)
    store = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(me, dist, store)
    peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(skdm.serialize()))
    mirror = InMemorySenderKeyStore()  # our own receiving side, fed the same messages
    process_sender_key_distribution_message(me, skdm, mirror)

    too_far = _forge_far_message(store, me, dist, MAX_FORWARD_JUMPS + 1, b"too far")
    res = _node_decrypt(peer, lib.name, me, [too_far])[0]
    assert not res["ok"]
    assert "too far into the future" in str(res["error"]["message"])  # type: ignore[index]
    with pytest.raises(InvalidMessageError, match="too far into the future"):
        group_decrypt(too_far, mirror, me)

    just_in = _forge_far_message(store, me, dist, MAX_FORWARD_JUMPS, b"just in")
    res = _node_decrypt(peer, lib.name, me, [just_in])[0]
    assert res["ok"], res
    assert unb64(str(res["plaintext"])) == b"just in"
    assert group_decrypt(just_in, mirror, me) == b"just in"

    # libsignal's own sender skipping 25,001 iterations: we reject as it does, and accept 25,000.
    lib_dist = uuid.uuid4()
    lib_skdm = unb64(
        peer.call("sk_create", party=lib.name, sender=lib.json(), distribution_id=str(lib_dist))[
            "skdm"
        ]
    )
    recv = InMemorySenderKeyStore()
    process_sender_key_distribution_message(
        lib, SenderKeyDistributionMessage.deserialize(lib_skdm), recv
    )
    [far] = peer.call(
        "sk_encrypt",
        party=lib.name,
        sender=lib.json(),
        distribution_id=str(lib_dist),
        skip=MAX_FORWARD_JUMPS + 1,
        plaintexts=[b64(b"far")],
    )["messages"]
    before = recv.load_sender_key(lib, lib_dist)
    with pytest.raises(InvalidMessageError, match="too far into the future"):
        group_decrypt(unb64(far), recv, lib)
    after = recv.load_sender_key(lib, lib_dist)
    assert before is not None and after is not None
    assert before.serialize() == after.serialize()  # transactional: nothing was committed


def test_bad_signature_and_tampering_rejected_like_libsignal(peer: LibsignalPeer) -> None:
    dist = uuid.uuid4()
    lib = _party(peer, "sk-sig-lib")
    me = Addr("sk-sig-me", 1)
    store = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(me, dist, store)
    peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(skdm.serialize()))
    mirror = InMemorySenderKeyStore()
    process_sender_key_distribution_message(me, skdm, mirror)
    good = group_encrypt(store, me, dist, b"hello").serialize()
    for position in (len(good) - 1, len(good) - 40, len(good) - 70):
        bad = bytearray(good)
        bad[position] ^= 0x01
        res = _node_decrypt(peer, lib.name, me, [bytes(bad)])[0]
        assert not res["ok"]
        assert "invalid signature" in str(res["error"]["message"])  # type: ignore[index]
        with pytest.raises(InvalidSenderKeySignatureError):
            group_decrypt(bytes(bad), mirror, me)
        with pytest.raises(InvalidMessageError):  # the libsignal-shaped class catches it too
            group_decrypt(bytes(bad), mirror, me)
    # Neither side committed anything: the good message still decrypts on both.
    assert group_decrypt(good, mirror, me) == b"hello"
    res = _node_decrypt(peer, lib.name, me, [good])[0]
    assert res["ok"] and unb64(str(res["plaintext"])) == b"hello"


def test_three_members_two_ours_one_libsignal(peer: LibsignalPeer) -> None:
    rng = random.Random(5)
    dist = uuid.uuid4()
    lib = _party(peer, "sk-3a-lib")
    ours = {
        Addr("sk-3a-ann", 1): InMemorySenderKeyStore(),
        Addr("sk-3a-ben", 7): InMemorySenderKeyStore(),
    }
    # Distribution: each of ours to everyone else; libsignal's to both of ours.
    for addr, store in ours.items():
        skdm = create_sender_key_distribution_message(addr, dist, store)
        peer.call("sk_process", party=lib.name, sender=addr.json(), skdm=b64(skdm.serialize()))
        for other, other_store in ours.items():
            if other != addr:
                process_sender_key_distribution_message(
                    addr, SenderKeyDistributionMessage.deserialize(skdm.serialize()), other_store
                )
    lib_skdm = peer.call("sk_create", party=lib.name, sender=lib.json(), distribution_id=str(dist))
    for store in ours.values():
        process_sender_key_distribution_message(
            lib, SenderKeyDistributionMessage.deserialize(unb64(lib_skdm["skdm"])), store
        )
    for round_ in range(5):
        for addr, store in ours.items():
            pts = _messages(rng, 10, f"{addr.name}-{round_}")
            cts = [group_encrypt(store, addr, dist, p).serialize() for p in pts]
            res = _node_decrypt(peer, lib.name, addr, cts)
            assert [unb64(str(r["plaintext"])) for r in res] == pts
            for other, other_store in ours.items():
                if other != addr:
                    assert [group_decrypt(c, other_store, addr) for c in cts] == pts
        pts = _messages(rng, 10, f"lib-{round_}")
        cts = peer.call(
            "sk_encrypt",
            party=lib.name,
            sender=lib.json(),
            distribution_id=str(dist),
            plaintexts=[b64(p) for p in pts],
        )["messages"]
        for store in ours.values():
            assert [group_decrypt(unb64(c), store, lib) for c in cts] == pts


def test_three_members_one_ours_two_libsignal(peer: LibsignalPeer) -> None:
    rng = random.Random(6)
    dist = uuid.uuid4()
    l1 = _party(peer, "sk-3b-l1")
    l2 = _party(peer, "sk-3b-l2")
    me = Addr("sk-3b-me", 3)
    store = InMemorySenderKeyStore()
    my_skdm = create_sender_key_distribution_message(me, dist, store).serialize()
    for lib in (l1, l2):
        peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(my_skdm))
    for sender, receiver in ((l1, l2), (l2, l1)):
        skdm = peer.call(
            "sk_create", party=sender.name, sender=sender.json(), distribution_id=str(dist)
        )["skdm"]
        peer.call("sk_process", party=receiver.name, sender=sender.json(), skdm=skdm)
        process_sender_key_distribution_message(
            sender, SenderKeyDistributionMessage.deserialize(unb64(skdm)), store
        )
    for round_ in range(5):
        pts = _messages(rng, 10, f"me-{round_}")
        cts = [group_encrypt(store, me, dist, p).serialize() for p in pts]
        for lib in (l1, l2):
            res = _node_decrypt(peer, lib.name, me, cts)
            assert [unb64(str(r["plaintext"])) for r in res] == pts
        for sender, receiver in ((l1, l2), (l2, l1)):
            pts = _messages(rng, 10, f"{sender.name}-{round_}")
            cts_b64 = peer.call(
                "sk_encrypt",
                party=sender.name,
                sender=sender.json(),
                distribution_id=str(dist),
                plaintexts=[b64(p) for p in pts],
            )["messages"]
            assert [group_decrypt(unb64(c), store, sender) for c in cts_b64] == pts
            res = _node_decrypt(peer, receiver.name, sender, [unb64(c) for c in cts_b64])
            assert [unb64(str(r["plaintext"])) for r in res] == pts


def test_new_sender_key_after_rekey_and_old_chain_still_decrypts(peer: LibsignalPeer) -> None:
    """A member re-keys (a new chain after someone left): both chains stay decryptable."""
    dist = uuid.uuid4()
    lib = _party(peer, "sk-rekey-lib")
    me = Addr("sk-rekey-me", 1)
    old_store = InMemorySenderKeyStore()
    old_skdm = create_sender_key_distribution_message(me, dist, old_store)
    peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(old_skdm.serialize()))
    old_ct = group_encrypt(old_store, me, dist, b"old chain").serialize()
    new_store = InMemorySenderKeyStore()
    new_skdm = create_sender_key_distribution_message(me, dist, new_store)
    assert new_skdm.chain_id != old_skdm.chain_id
    peer.call("sk_process", party=lib.name, sender=me.json(), skdm=b64(new_skdm.serialize()))
    new_ct = group_encrypt(new_store, me, dist, b"new chain").serialize()
    res = _node_decrypt(peer, lib.name, me, [new_ct, old_ct])
    assert [unb64(str(r["plaintext"])) for r in res] == [b"new chain", b"old chain"]


def _strip_format_field(record: bytes) -> bytes:
    fields = protobuf.decode(record)
    return protobuf.encode([(1, s) for s in fields.repeated_bytes(1)])


def test_records_are_interchangeable_with_libsignal(peer: LibsignalPeer) -> None:
    rng = random.Random(7)
    dist = uuid.uuid4()
    lib = _party(peer, "sk-rec-lib")
    # libsignal's sender record (with skipped keys on the receiving side) reads and re-encodes
    # byte for byte.
    skdm = peer.call("sk_create", party=lib.name, sender=lib.json(), distribution_id=str(dist))[
        "skdm"
    ]
    peer.call("new_party", party="sk-rec-recv", device_id=1)
    peer.call("sk_process", party="sk-rec-recv", sender=lib.json(), skdm=skdm)
    cts = peer.call(
        "sk_encrypt",
        party=lib.name,
        sender=lib.json(),
        distribution_id=str(dist),
        plaintexts=[b64(rng.randbytes(20)) for _ in range(30)],
    )["messages"]
    _node_decrypt(peer, "sk-rec-recv", lib, [unb64(c) for c in cts[::3]])
    for party in (lib.name, "sk-rec-recv"):
        raw = unb64(
            peer.call("sk_record", party=party, sender=lib.json(), distribution_id=str(dist))[
                "record"
            ]
        )
        ours = SenderKeyRecord.deserialize(raw)
        assert _strip_format_field(ours.serialize()) == raw
    # Our receiving record, handed to libsignal, decrypts the remaining messages there.
    mine = InMemorySenderKeyStore()
    process_sender_key_distribution_message(
        lib, SenderKeyDistributionMessage.deserialize(unb64(skdm)), mine
    )
    for c in cts[::3]:
        group_decrypt(unb64(c), mine, lib)
    record = mine.load_sender_key(lib, dist)
    assert record is not None
    peer.call("new_party", party="sk-rec-import", device_id=1)
    peer.call(
        "sk_set_record",
        party="sk-rec-import",
        sender=lib.json(),
        distribution_id=str(dist),
        record=b64(record.serialize()),
    )
    rest = [unb64(c) for i, c in enumerate(cts) if i % 3]
    res = _node_decrypt(peer, "sk-rec-import", lib, rest)
    assert all(r["ok"] for r in res), res


def test_unknown_sender_key_rejected_both_ways(peer: LibsignalPeer) -> None:
    lib = _party(peer, "sk-unk-lib")
    me = Addr("sk-unk-me", 1)
    dist = uuid.uuid4()
    store = InMemorySenderKeyStore()
    create_sender_key_distribution_message(me, dist, store)
    ct = group_encrypt(store, me, dist, os.urandom(8)).serialize()
    res = _node_decrypt(peer, lib.name, me, [ct])[0]
    assert not res["ok"]
    peer.call("sk_create", party=lib.name, sender=lib.json(), distribution_id=str(dist))
    [lib_ct] = peer.call(
        "sk_encrypt",
        party=lib.name,
        sender=lib.json(),
        distribution_id=str(dist),
        plaintexts=[b64(b"x")],
    )["messages"]
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(unb64(lib_ct), InMemorySenderKeyStore(), lib)
    with pytest.raises(PeerError):
        peer.call(
            "sk_encrypt",
            party=lib.name,
            sender=lib.json(),
            distribution_id=str(uuid.uuid4()),
            plaintexts=[b64(b"x")],
        )
