"""The strict protobuf codec."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.crypto import InvalidMessageError
from tidings.crypto.protobuf import Fixed32, Fixed64, decode, decode_varint, encode, encode_varint


def test_known_encoding() -> None:
    # field 1 varint 150 is the protobuf documentation's example: 08 96 01
    assert encode([(1, 150)]) == bytes.fromhex("089601")
    assert encode([(2, b"testing")]) == bytes.fromhex("120774657374696e67")
    assert encode([(3, Fixed32(1)), (4, Fixed64(2))]) == bytes.fromhex(
        "1d01000000210200000000000000"
    )
    assert encode([(1, None), (2, 0)]) == bytes.fromhex("1000")


def test_decode_and_getters() -> None:
    fields = decode(encode([(1, b"a"), (2, 5), (2, 7), (3, b"x"), (3, b"y"), (9, Fixed64(3))]))
    assert fields.required_bytes(1) == b"a"
    assert fields.required_uint(2) == 7  # last value wins
    assert fields.repeated_bytes(3) == [b"x", b"y"]
    assert fields.optional_uint(9) == 3
    assert fields.optional_bytes(4) is None
    assert fields.optional_uint(4) is None
    with pytest.raises(InvalidMessageError):
        fields.required_bytes(4)
    with pytest.raises(InvalidMessageError):
        fields.required_uint(4)
    with pytest.raises(InvalidMessageError):
        fields.required_bytes(2)  # a varint asked for as bytes
    with pytest.raises(InvalidMessageError):
        fields.required_uint(1)
    assert decode(encode([(1, 2**40)])).optional_uint32(1) == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # key without value
        b"\x08\x80",  # truncated varint
        b"\x12\x05abc",  # length beyond the end
        b"\x12",  # missing length
        b"\x00\x01",  # field number 0
        b"\x0b",  # group start (wire type 3)
        b"\x0c",  # group end (wire type 4)
        b"\x0e\x00",  # wire type 6
        b"\x1d\x01\x02",  # truncated fixed32
        b"\x19\x01\x02\x03",  # truncated fixed64
        b"\x08" + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # varint above 2**64 - 1
    ],
)
def test_malformed_input_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidMessageError):
        decode(data)


def test_varint_bounds() -> None:
    assert decode_varint(encode_varint(2**64 - 1), 0) == (2**64 - 1, 10)
    with pytest.raises(ValueError):
        encode_varint(2**64)
    with pytest.raises(ValueError):
        encode_varint(-1)


_values = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=300),
)


@given(st.lists(st.tuples(st.integers(min_value=1, max_value=2**29 - 1), _values), max_size=20))
def test_round_trip(pairs: list[tuple[int, int | bytes]]) -> None:
    fields = decode(encode(pairs))
    expected: dict[int, list[int | bytes]] = {}
    for number, value in pairs:
        expected.setdefault(number, []).append(value)
    assert dict(fields) == expected


@given(st.binary(max_size=200))
def test_garbage_never_crashes(data: bytes) -> None:
    with contextlib.suppress(InvalidMessageError):
        decode(data)
