"""libsodium-backed XEdDSA against the pure-Python reference arithmetic, byte for byte."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import PrivateKey, PublicKey, xeddsa

from . import xeddsa_reference as ref


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=300),
    st.binary(min_size=64, max_size=64),
)
def test_sign_matches_reference(seed: bytes, message: bytes, random: bytes) -> None:
    private = PrivateKey(seed).serialize()  # clamped
    edwards = xeddsa.edwards_public_key(private)
    assert edwards == ref.edwards_public_key(private)
    signature = xeddsa.sign(private, edwards, message, random)
    assert signature == ref.sign(private, message, random)
    scalar = xeddsa.signing_scalar(private)
    assert scalar == (int.from_bytes(private, "little") % ref.L).to_bytes(32, "little")
    assert xeddsa.sign_with_scalar(private, scalar, edwards, message, random) == signature
    public = PrivateKey(seed).public_key()
    assert public.verify_signature(message, signature)


def test_unclamped_and_extreme_scalars_match_reference() -> None:
    # edwards_public_key reduces any 32-byte scalar mod L, like the reference
    for scalar in (bytes(31) + b"\x40", b"\xff" * 32, b"\x08" + bytes(31), os.urandom(32)):
        assert xeddsa.edwards_public_key(scalar) == ref.edwards_public_key(scalar)


def test_zero_nonce_point_is_identity() -> None:
    assert xeddsa._base_mult(bytes(32)) == ref.scalar_mult_base(0)
    # a scalar that is a multiple of L reduces to zero as well
    assert xeddsa.edwards_public_key(ref.L.to_bytes(32, "little")) == ref.scalar_mult_base(0)


def test_fresh_randomness_per_signature() -> None:
    private = PrivateKey.generate()
    signatures = {private.calculate_signature(b"same message") for _ in range(8)}
    assert len(signatures) == 8  # Z is 64 fresh random bytes each time, so R differs
    public: PublicKey = private.public_key()
    assert all(public.verify_signature(b"same message", s) for s in signatures)
