"""Safety numbers and XEdDSA signatures against real libsignal (0.72.1 and 0.90.0)."""

from __future__ import annotations

import random

import pytest
from libsignal_peer import LibsignalPeer, b64, unb64

from tidings.crypto.fingerprint import (
    Fingerprint,
    FingerprintVersionMismatchError,
    NumericFingerprintGenerator,
    ScannableFingerprint,
)
from tidings.crypto.keys import IdentityKey, IdentityKeyPair, PrivateKey, PublicKey

pytestmark = pytest.mark.interop


def _node_fingerprint(
    peer: LibsignalPeer,
    version: int,
    local_id: bytes,
    local_key: bytes,
    remote_id: bytes,
    remote_key: bytes,
    iterations: int = 5200,
) -> tuple[str, bytes]:
    res = peer.call(
        "fingerprint",
        iterations=iterations,
        version=version,
        local_id=b64(local_id),
        local_key=b64(local_key),
        remote_id=b64(remote_id),
        remote_key=b64(remote_key),
    )
    return str(res["display"]), unb64(res["scannable"])


def test_safety_numbers_equal_libsignal(peer: LibsignalPeer) -> None:
    rng = random.Random(11)
    generator = NumericFingerprintGenerator(5200)
    for case in range(12):
        ours = IdentityKeyPair.generate()
        node_key = unb64(peer.call("generate_key")["public_key"])
        theirs = IdentityKey.deserialize(node_key)
        if case % 3 == 2:
            version = 1
            local_id = f"+1415{rng.randrange(10**7):07d}".encode()
            remote_id = f"+1415{rng.randrange(10**7):07d}".encode()
        else:
            version = 2
            local_id, remote_id = rng.randbytes(16), rng.randbytes(16)
        mine = generator.create_for(version, local_id, ours.identity_key, remote_id, theirs)
        display, scannable = _node_fingerprint(
            peer, version, local_id, ours.identity_key.serialize(), remote_id, node_key
        )
        assert mine.display_string() == display
        assert len(display) == 60 and display.isdigit()
        assert mine.scannable.serialize() == scannable
        # The other side's view: same number, and each side's scan of the other matches.
        their_display, their_scannable = _node_fingerprint(
            peer, version, remote_id, node_key, local_id, ours.identity_key.serialize()
        )
        assert their_display == display
        assert mine.scannable.compare(their_scannable)
        cmp = peer.call(
            "fingerprint_compare", mine=b64(their_scannable), theirs=b64(mine.scannable.serialize())
        )
        assert cmp["equal"] is True
        # A different key does not match on either side.
        other = IdentityKeyPair.generate().identity_key
        wrong = Fingerprint.create(version, 5200, local_id, ours.identity_key, remote_id, other)
        assert not wrong.scannable.compare(their_scannable)
        cmp = peer.call(
            "fingerprint_compare",
            mine=b64(their_scannable),
            theirs=b64(wrong.scannable.serialize()),
        )
        assert cmp["equal"] is False


def test_fingerprint_other_iterations_and_version_mismatch(peer: LibsignalPeer) -> None:
    ours = IdentityKeyPair.generate().identity_key
    theirs = IdentityKeyPair.generate().identity_key
    for iterations in (2, 1024, 9999):
        mine = Fingerprint.create(2, iterations, b"alice", ours, b"bob", theirs)
        display, scannable = _node_fingerprint(
            peer, 2, b"alice", ours.serialize(), b"bob", theirs.serialize(), iterations
        )
        assert (mine.display_string(), mine.scannable.serialize()) == (display, scannable)
    v1 = Fingerprint.create(1, 5200, b"bob", theirs, b"alice", ours)
    v2 = Fingerprint.create(2, 5200, b"alice", ours, b"bob", theirs)
    with pytest.raises(FingerprintVersionMismatchError):
        v2.scannable.compare(v1.scannable.serialize())
    assert ScannableFingerprint.deserialize(v2.scannable.serialize()) == v2.scannable


def test_xeddsa_signatures_cross_verify(peer: LibsignalPeer) -> None:
    rng = random.Random(12)
    # Our signatures verify in libsignal.
    for _ in range(4):
        key = PrivateKey.generate()
        messages = [rng.randbytes(rng.randrange(0, 200)) for _ in range(10)]
        sigs = [key.calculate_signature(m) for m in messages]
        items = [
            {"message": b64(m), "signature": b64(s)} for m, s in zip(messages, sigs, strict=True)
        ]
        tampered = [
            {"message": b64(m + b"!"), "signature": b64(s)}
            for m, s in zip(messages, sigs, strict=True)
        ]
        valid = peer.call(
            "verify", public_key=b64(key.public_key().serialize()), items=items + tampered
        )["valid"]
        assert valid == [True] * 10 + [False] * 10
    # libsignal's signatures verify here; its private keys give the same public keys and
    # agreements here.
    for _ in range(4):
        pair = peer.call("generate_key")
        private = PrivateKey.deserialize(unb64(pair["private_key"]))
        public = PublicKey.deserialize(unb64(pair["public_key"]))
        assert private.public_key() == public
        messages = [rng.randbytes(rng.randrange(0, 200)) for _ in range(10)]
        sigs = [
            unb64(s)
            for s in peer.call(
                "sign", private_key=pair["private_key"], messages=[b64(m) for m in messages]
            )["signatures"]
        ]
        for m, s in zip(messages, sigs, strict=True):
            assert public.verify_signature(m, s)
            assert not public.verify_signature(m + b"!", s)
            flipped = bytearray(s)
            flipped[63] ^= 0x80  # the Edwards sign bit
            assert not public.verify_signature(m, bytes(flipped))
        # The same private key signing here is accepted by libsignal.
        mine = private.calculate_signature(b"from python")
        ok = peer.call(
            "verify",
            public_key=pair["public_key"],
            items=[{"message": b64(b"from python"), "signature": b64(mine)}],
        )["valid"]
        assert ok == [True]
        other = PrivateKey.generate()
        shared = peer.call(
            "agree",
            private_key=pair["private_key"],
            public_key=b64(other.public_key().serialize()),
        )["shared"]
        assert other.calculate_agreement(public) == unb64(shared)


def test_identity_signatures_on_prekeys_cross_verify(peer: LibsignalPeer) -> None:
    """libsignal's identity key signs its signed prekey; ours signs ours; each verifies."""
    peer.call("new_party", party="fp-sig", device_id=1)
    bundle = peer.call("make_bundle", party="fp-sig", kyber=True)
    identity = IdentityKey.deserialize(unb64(bundle["identity_key"]))
    assert identity.verify_signature(
        unb64(bundle["signed_prekey"]), unb64(bundle["signed_prekey_signature"])
    )
    assert identity.verify_signature(
        unb64(bundle["kyber_prekey"]), unb64(bundle["kyber_prekey_signature"])
    )
    mine = IdentityKeyPair.generate()
    spk = PrivateKey.generate().public_key().serialize()
    sig = mine.calculate_signature(spk)
    ok = peer.call(
        "verify",
        public_key=b64(mine.identity_key.serialize()),
        items=[{"message": b64(spk), "signature": b64(sig)}],
    )["valid"]
    assert ok == [True]
