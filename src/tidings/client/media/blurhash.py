"""BlurHash (https://blurha.sh) in pure Python: the placeholder a photo or video carries.

The same algorithm, and on the same pixels the same strings, as the reference C implementation
that ``blurhash-python`` wraps (tests/unit/media/test_blurhash.py compares both on sample
images), but with nothing to compile: Android has no recipe for that C extension. It is fast
enough for what the app does with it: one :func:`encode` per photo or video sent, on a ≈32 px
copy (:func:`tidings.client.media.image.image_blurhash`), and one :func:`decode` of a 32 px wide
placeholder per media bubble shown. Both work separably: a 2-D cosine basis is the product of a
horizontal and a vertical one, so each pass sums a row or a column once instead of once per
pixel and component.

Differences from ``blurhash-python``: :func:`encode` does not close the image it is given, and
:func:`decode` raises ``ValueError`` (never returns garbage) for anything that is not a
well-formed BlurHash.
"""

from __future__ import annotations

import math
from typing import Final

from PIL import Image

__all__ = ["decode", "encode", "is_valid_blurhash"]

_ALPHABET: Final = (
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
)
_DIGIT: Final = {c: i for i, c in enumerate(_ALPHABET)}


def _srgb_to_linear(value: int) -> float:
    v = value / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


_TO_LINEAR: Final = tuple(_srgb_to_linear(v) for v in range(256))


def _linear_to_srgb(value: float) -> int:
    v = max(0.0, min(1.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _sign_pow(value: float, exponent: float) -> float:
    return math.copysign(abs(value) ** exponent, value)


def _base83(value: int, length: int) -> str:
    return "".join(_ALPHABET[(value // 83 ** (length - 1 - i)) % 83] for i in range(length))


def _unbase83(text: str) -> int:
    value = 0
    for char in text:
        digit = _DIGIT.get(char)
        if digit is None:
            raise ValueError(f"not a BlurHash character: {char!r}")
        value = value * 83 + digit
    return value


def _basis(components: int, size: int) -> list[list[float]]:
    """``cos(pi * c * i / size)`` for each component ``c`` and position ``i``."""
    return [[math.cos(math.pi * c * i / size) for i in range(size)] for c in range(components)]


def encode(image: Image.Image, x_components: int, y_components: int) -> str:
    """The BlurHash of ``image`` (any mode; converted to RGB) with the given components (1-9)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("BlurHash components must be between 1 and 9")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if width < 1 or height < 1:
        raise ValueError("cannot encode an empty image")
    data = rgb.tobytes()
    linear = [_TO_LINEAR[b] for b in data]
    cos_x = _basis(x_components, width)
    cos_y = _basis(y_components, height)
    # rows[y][i] = the row y's (r, g, b) weighted by the horizontal basis i
    rows: list[list[tuple[float, float, float]]] = []
    for y in range(height):
        row = linear[y * width * 3 : (y + 1) * width * 3]
        reds, greens, blues = row[0::3], row[1::3], row[2::3]
        sums = []
        for basis in cos_x:
            sums.append(
                (
                    math.fsum(b * v for b, v in zip(basis, reds, strict=True)),
                    math.fsum(b * v for b, v in zip(basis, greens, strict=True)),
                    math.fsum(b * v for b, v in zip(basis, blues, strict=True)),
                )
            )
        rows.append(sums)
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            scale = (1 if i == 0 and j == 0 else 2) / (width * height)
            r = math.fsum(cos_y[j][y] * rows[y][i][0] for y in range(height))
            g = math.fsum(cos_y[j][y] * rows[y][i][1] for y in range(height))
            b = math.fsum(cos_y[j][y] * rows[y][i][2] for y in range(height))
            factors.append((r * scale, g * scale, b * scale))
    dc, ac = factors[0], factors[1:]
    out = [_base83((x_components - 1) + (y_components - 1) * 9, 1)]
    if ac:
        actual_max = max(abs(c) for factor in ac for c in factor)
        quantised = int(max(0, min(82, math.floor(actual_max * 166 - 0.5))))
        maximum = (quantised + 1) / 166
        out.append(_base83(quantised, 1))
    else:
        maximum = 1.0
        out.append(_base83(0, 1))
    out.append(
        _base83(
            (_linear_to_srgb(dc[0]) << 16) + (_linear_to_srgb(dc[1]) << 8) + _linear_to_srgb(dc[2]),
            4,
        )
    )
    for factor in ac:
        r, g, b = (
            int(max(0, min(18, math.floor(_sign_pow(c / maximum, 0.5) * 9 + 9.5)))) for c in factor
        )
        out.append(_base83(r * 19 * 19 + g * 19 + b, 2))
    return "".join(out)


def _components(blurhash: str) -> tuple[int, int]:
    if len(blurhash) < 6:
        raise ValueError("a BlurHash has at least 6 characters")
    size_flag = _unbase83(blurhash[0])
    x, y = size_flag % 9 + 1, size_flag // 9 + 1
    if len(blurhash) != 4 + 2 * x * y:
        raise ValueError(f"a {x}x{y} BlurHash has {4 + 2 * x * y} characters, not {len(blurhash)}")
    _unbase83(blurhash)  # every character
    return x, y


def is_valid_blurhash(blurhash: str) -> bool:
    """Whether ``blurhash`` is well formed (its length matches its component count)."""
    try:
        _components(blurhash)
    except ValueError:
        return False
    return True


def decode(blurhash: str, width: int, height: int, punch: int = 1) -> Image.Image:
    """The ``width`` x ``height`` RGB picture ``blurhash`` stands for (``punch`` > 1 boosts
    contrast). ValueError for a malformed hash or a size below 1."""
    if width < 1 or height < 1:
        raise ValueError("the picture needs a positive size")
    x_components, y_components = _components(blurhash)
    maximum = (_unbase83(blurhash[1]) + 1) / 166 * max(1, punch)
    dc = _unbase83(blurhash[2:6])
    colours = [(_TO_LINEAR[dc >> 16], _TO_LINEAR[(dc >> 8) & 255], _TO_LINEAR[dc & 255])]
    for k in range(1, x_components * y_components):
        value = _unbase83(blurhash[4 + 2 * k : 6 + 2 * k])
        quant = (value // (19 * 19), (value // 19) % 19, value % 19)
        r, g, b = (_sign_pow((q - 9) / 9, 2.0) * maximum for q in quant)
        colours.append((r, g, b))
    cos_x = _basis(x_components, width)
    cos_y = _basis(y_components, height)
    pixels = bytearray()
    for y in range(height):
        # this row's colour per horizontal component: the vertical sum done once per row
        row = []
        for i in range(x_components):
            r = g = b = 0.0
            for j in range(y_components):
                weight = cos_y[j][y]
                colour = colours[i + j * x_components]
                r += colour[0] * weight
                g += colour[1] * weight
                b += colour[2] * weight
            row.append((r, g, b))
        for x in range(width):
            r = g = b = 0.0
            for i in range(x_components):
                weight = cos_x[i][x]
                colour = row[i]
                r += colour[0] * weight
                g += colour[1] * weight
                b += colour[2] * weight
            pixels += bytes((_linear_to_srgb(r), _linear_to_srgb(g), _linear_to_srgb(b)))
    return Image.frombytes("RGB", (width, height), bytes(pixels))
