"""A small, strict Protocol Buffers wire codec for the Signal protocol's messages.

Only the wire format is handled; each message module maps field numbers to meaning.

Encoding::

    encode([(1, b"\\x05..."), (2, 7), (4, Fixed64(9))]) -> bytes

Each pair is ``(field_number, value)``: an ``int`` is written as a varint (wire type 0; it must
be in ``0 .. 2**64-1``), ``bytes`` as length-delimited (wire type 2), :class:`Fixed32` /
:class:`Fixed64` as wire types 5 / 1. Pairs are written in the order given; a ``None`` value is
skipped, which makes optional fields easy to write.

Decoding::

    fields = decode(data)          # Fields: dict[int, list[int | bytes]]
    fields.required_bytes(1)       # last value of field 1; InvalidMessageError if absent
    fields.optional_bytes(1)       # or None when absent
    fields.required_uint(2) / fields.optional_uint(2) / fields.repeated_bytes(3)

:func:`decode` raises :class:`~tidings.crypto.errors.InvalidMessageError` on truncated input,
over-long varints, field number 0, groups (wire types 3/4) or unknown wire types. Unknown field
numbers are kept and ignored by the getters. As in protobuf, a repeated scalar field's last
value wins. Getters check the wire type: asking for ``bytes`` of a varint field raises
``InvalidMessageError``. Fixed-width fields decode to ``int``, which the ``uint`` getters
accept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .errors import InvalidMessageError

__all__ = ["Fields", "Fixed32", "Fixed64", "decode", "decode_varint", "encode", "encode_varint"]

_U64_MAX = (1 << 64) - 1


class Fixed32(NamedTuple):
    """A value to be written as wire type 5 (little-endian 32 bits)."""

    value: int


class Fixed64(NamedTuple):
    """A value to be written as wire type 1 (little-endian 64 bits)."""

    value: int


FieldValue = int | bytes | Fixed32 | Fixed64 | None


def encode_varint(value: int) -> bytes:
    """Encode an unsigned integer below 2**64 as a protobuf varint."""
    if value < 0 or value > _U64_MAX:
        raise ValueError("varint out of range")
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # two bytes: counters and lengths of a few thousand
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(fields: Iterable[tuple[int, FieldValue]]) -> bytes:
    """Serialize ``(field_number, value)`` pairs; see the module docstring."""
    out = bytearray()
    append = out.append
    for number, value in fields:
        if value is None:
            continue
        # Fast paths for one-byte keys, lengths and values; encode_varint does the rest and
        # all range checks.
        if isinstance(value, bytes):
            key = (number << 3) | 2
            if 0 < key < 0x80:
                append(key)
            else:
                out += encode_varint(key)
            length = len(value)
            if length < 0x80:
                append(length)
            else:
                out += encode_varint(length)
            out += value
        elif type(value) is int:
            key = number << 3
            if 0 < key < 0x80:
                append(key)
            else:
                out += encode_varint(key)
            if 0 <= value < 0x80:
                append(value)
            else:
                out += encode_varint(value)
        elif isinstance(value, Fixed32):
            out += encode_varint((number << 3) | 5)
            out += value.value.to_bytes(4, "little")
        elif isinstance(value, Fixed64):
            out += encode_varint((number << 3) | 1)
            out += value.value.to_bytes(8, "little")
        else:
            out += encode_varint(number << 3)
            out += encode_varint(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return ``(value, next_pos)``. Strict: at most 10 bytes, < 2**64."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise InvalidMessageError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _U64_MAX:
                raise InvalidMessageError("varint exceeds 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise InvalidMessageError("varint too long")


class Fields(dict[int, list[int | bytes]]):
    """Decoded fields: field number → values in wire order, with typed getters."""

    def _last(self, number: int) -> int | bytes | None:
        values = self.get(number)
        return values[-1] if values else None

    def optional_bytes(self, number: int) -> bytes | None:
        """The last length-delimited value of ``number``, or ``None`` when absent."""
        values = self.get(number)
        if not values:
            return None
        value = values[-1]
        if isinstance(value, bytes):
            return value
        raise InvalidMessageError(f"field {number} is not length-delimited")

    def required_bytes(self, number: int) -> bytes:
        """The last length-delimited value of ``number``; ``InvalidMessageError`` if absent."""
        value = self.optional_bytes(number)
        if value is None:
            raise InvalidMessageError(f"missing field {number}")
        return value

    def optional_uint(self, number: int) -> int | None:
        """The last integer value (varint or fixed) of ``number``, or ``None`` when absent."""
        values = self.get(number)
        if not values:
            return None
        value = values[-1]
        if isinstance(value, int):
            return value
        raise InvalidMessageError(f"field {number} is not an integer")

    def required_uint(self, number: int) -> int:
        """The last integer value of ``number``; ``InvalidMessageError`` if absent."""
        value = self.optional_uint(number)
        if value is None:
            raise InvalidMessageError(f"missing field {number}")
        return value

    def optional_uint32(self, number: int) -> int | None:
        """Like :meth:`optional_uint`, truncated to 32 bits as protobuf's ``uint32`` is."""
        values = self.get(number)
        if not values:
            return None
        value = values[-1]
        if isinstance(value, int):
            return value & 0xFFFFFFFF
        raise InvalidMessageError(f"field {number} is not an integer")

    def repeated_bytes(self, number: int) -> list[bytes]:
        """Every length-delimited value of ``number``, in wire order."""
        out: list[bytes] = []
        for value in self.get(number, ()):
            if not isinstance(value, bytes):
                raise InvalidMessageError(f"field {number} is not length-delimited")
            out.append(value)
        return out


def decode(data: bytes) -> Fields:
    """Parse a serialized message into :class:`Fields`; see the module docstring."""
    fields = Fields()
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = decode_varint(data, pos)
        number = key >> 3
        wire_type = key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise InvalidMessageError("invalid field number")
        value: int | bytes
        if wire_type == 0:
            if pos < end and data[pos] < 0x80:
                value = data[pos]
                pos += 1
            else:
                value, pos = decode_varint(data, pos)
        elif wire_type == 2:
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = decode_varint(data, pos)
            stop = pos + length
            if stop > end:
                raise InvalidMessageError("truncated length-delimited field")
            value = bytes(data[pos:stop])
            pos = stop
        elif wire_type == 5:
            if pos + 4 > end:
                raise InvalidMessageError("truncated fixed32 field")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire_type == 1:
            if pos + 8 > end:
                raise InvalidMessageError("truncated fixed64 field")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise InvalidMessageError(f"unsupported wire type {wire_type}")
        values = fields.get(number)
        if values is None:
            fields[number] = [value]
        else:
            values.append(value)
    return fields
