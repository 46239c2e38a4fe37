"""The fast paths for sender key states, records and messages against the general protobuf
codec: what the fast path accepts, it reads (and writes) exactly as the general codec does."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import KeyPair, protobuf
from tidings.crypto.sender_keys import (
    SENDER_KEY_RECORD_FORMAT,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyState,
    _common_message_layout,
    _common_record_layout,
    _common_state_layout,
    _parse_message,
    _parse_message_fields,
    _parse_version,
    _record_states,
)

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


def _outcome(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except Exception as exc:
        return type(exc)


def _mutate(encoded: bytes, data: st.DataObject) -> bytes:
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
    return bytes(mutated)


def _reference_state_encoding(state: SenderKeyState) -> bytes:
    """SenderKeyStateStructure through the general encoder (what _encode must write)."""
    signing = protobuf.encode(
        [
            (1, state.signing_public.serialize()),
            (2, None if state.signing_private is None else state.signing_private.serialize()),
        ]
    )
    fields: list[tuple[int, protobuf.FieldValue]] = [
        (1, state.chain_id or None),
        (2, protobuf.encode([(1, state.iteration or None), (2, state.chain_key or None)])),
        (3, signing),
    ]
    for iteration, seed in state.message_keys.items():
        fields.append((4, protobuf.encode([(1, iteration or None), (2, seed or None)])))
    fields.append((5, state.message_version or None))
    return protobuf.encode(fields)


@settings(max_examples=300, deadline=None)
@given(st.lists(_states, max_size=5), st.data())
def test_record_codec_agrees_with_general_codec(
    states: list[SenderKeyState], data: st.DataObject
) -> None:
    for state in states:
        assert state._encode() == _reference_state_encoding(state)
    encoded = SenderKeyRecord(states).serialize()
    assert encoded == protobuf.encode(
        [(1, state._encode()) for state in states] + [(15, SENDER_KEY_RECORD_FORMAT)]
    )
    assert _common_record_layout(encoded) is not None
    for raw in (encoded, encoded[:-2], _mutate(encoded, data)):  # [:-2]: as libsignal writes it
        fast = _common_record_layout(raw)
        if fast is not None:
            assert fast == _outcome(lambda raw=raw: _record_states(raw))


def test_record_layout_edges() -> None:
    state = SenderKeyState(3, 7, 1, b"k" * 32, _PAIRS[0].public_key)._encode()
    entry = protobuf.encode([(1, state)])
    for raw in (
        b"",
        entry,
        entry + b"\x78\x01",
        entry + b"\x78\x00",
        entry + b"\x78\x02",  # a later format: refused by the general parser
        entry + b"\x78\x01" + entry,  # format field not last
        entry + b"\x78\x01\x78\x01",
        entry + b"\x10\x01",  # an unknown field
        b"\x0a\x80\x01" + state,  # a length longer than the data
    ):
        fast = _common_record_layout(raw)
        general = _outcome(lambda raw=raw: _record_states(raw))
        assert fast is None or fast == general


_messages = st.builds(
    lambda chain_id, iteration, ciphertext: SenderKeyMessage.create(
        3, uuid.UUID(int=chain_id * 7919), chain_id, iteration, ciphertext, _PAIRS[1].private_key
    ).serialize(),
    st.integers(0, 2**31 - 1),
    st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
    st.binary(max_size=300),
)


def _general_message(raw: bytes) -> object:
    def parse() -> object:
        if len(raw) < 65:
            raise ValueError("too short")
        return _parse_message_fields(_parse_version(raw[0]), raw)

    return _outcome(parse)


@settings(max_examples=300, deadline=None)
@given(_messages, st.data())
def test_message_fast_path_agrees_with_general_parser(encoded: bytes, data: st.DataObject) -> None:
    assert _common_message_layout(encoded) is not None
    assert _parse_message(encoded) == _general_message(encoded)
    body_end = len(encoded) - 64
    for raw in (encoded, _mutate(encoded[:body_end], data) + encoded[body_end:]):
        if _common_message_layout(raw) is not None:
            assert _outcome(lambda raw=raw: _parse_message(raw)) == _general_message(raw)
