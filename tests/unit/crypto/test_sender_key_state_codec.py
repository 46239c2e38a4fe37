"""The fast path for loading a sender key state against the general protobuf parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import KeyPair
from tidings.crypto.sender_keys import SenderKeyState, _common_state_layout

_PAIRS = [KeyPair.generate() for _ in range(3)]


def _summary(data: bytes, fast: bool) -> object:
    try:
        state = SenderKeyState._decode(data) if fast else SenderKeyState._decode_fields(data)
    except Exception as exc:
        return type(exc)
    return (
        state.message_version,
        state.chain_id,
        state.iteration,
        state.chain_key,
        state.signing_public,
        None if state.signing_private is None else state.signing_private.serialize(),
        state.message_keys,
        state._encode(),
    )


_states = st.builds(
    lambda version, chain_id, iteration, key, pair, own, keys: SenderKeyState(
        version, chain_id, iteration, key, pair.public_key, pair.private_key if own else None, keys
    ),
    st.sampled_from([0, 1, 3, 200]),
    st.one_of(st.just(0), st.integers(0, 2**31 - 1)),
    st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
    st.one_of(st.just(b""), st.binary(min_size=32, max_size=32), st.binary(max_size=140)),
    st.sampled_from(_PAIRS),
    st.booleans(),
    st.one_of(st.just({}), st.dictionaries(st.integers(0, 5000), st.binary(max_size=40))),
)


@settings(max_examples=300, deadline=None)
@given(_states, st.data())
def test_fast_path_agrees_with_general_parser(state: SenderKeyState, data: st.DataObject) -> None:
    encoded = state._encode()
    assert _summary(encoded, True) == _summary(encoded, False)
    if not state.message_keys and len(state.chain_key) < 100:
        assert _common_state_layout(encoded) is not None  # the common case takes the fast path
    # damaged and rearranged inputs: same outcome either way
    mutated = bytearray(encoded)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip" and mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] = data.draw(st.integers(0, 255))
        elif kind == "cut" and mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            del mutated[i : i + data.draw(st.integers(1, 4))]
        else:
            i = data.draw(st.integers(0, len(mutated)))
            mutated[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    assert _summary(bytes(mutated), True) == _summary(bytes(mutated), False)


def test_edge_layouts() -> None:
    pair = _PAIRS[0]
    signing = SenderKeyState(3, 1, 0, b"k" * 32, pair.public_key)._encode()
    for data in (
        b"",
        signing,
        signing + b"\x28\x00",  # explicit version 0
        signing + b"\x28\x03\x28\x03",  # repeated version
        b"\x08\x00" + signing[2:] if signing[:1] == b"\x08" else signing,
        b"\x08" + b"\xff" * 11 + signing,  # over-long varint
    ):
        assert _summary(data, True) == _summary(data, False)
