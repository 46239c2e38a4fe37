"""The fonts text is drawn with, which one draws which character, and the emoji pictures.

Fallback chain (first font whose character map has the code point wins): Roboto (Latin,
Greek, Cyrillic; the bold/italic face the label asks for) → Noto Sans Arabic → Noto Sans
Hebrew → DejaVu Sans (symbols, Armenian, Georgian, …) → Droid Sans Fallback (CJK: Han, kana,
Hangul). Roboto and DejaVu Sans come with Kivy (on Android too); the others are packaged in
``tidings/app/fonts``. Character maps are read from the font files' ``cmap`` tables here
(formats 4 and 12), so no font library beyond Pillow's FreeType binding is needed.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
from dataclasses import dataclass, field
from functools import cache

from PIL import Image, ImageFont

_APP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FONT_DIR = os.path.join(_APP, "fonts")
EMOJI_DIR = os.path.join(_APP, "emoji")


def _kivy_fonts() -> str:
    import kivy  # only for the location of its bundled fonts

    return os.path.join(os.path.dirname(kivy.__file__), "data", "fonts")


def latin_font(bold: bool = False, italic: bool = False) -> str:
    style = {(False, False): "Regular", (True, False): "Bold"}
    style |= {(False, True): "Italic", (True, True): "BoldItalic"}
    return os.path.join(_kivy_fonts(), f"Roboto-{style[(bold, italic)]}.ttf")


def fallback_fonts() -> tuple[str, ...]:
    """The fonts after the Latin one, in the order they are tried."""
    return (
        os.path.join(FONT_DIR, "NotoSansArabic-Regular.ttf"),
        os.path.join(FONT_DIR, "NotoSansHebrew-Regular.ttf"),
        os.path.join(_kivy_fonts(), "DejaVuSans.ttf"),
        os.path.join(FONT_DIR, "DroidSansFallbackFull.ttf"),
    )


@dataclass(frozen=True)
class Coverage:
    """The code points a font has glyphs for, as sorted disjoint ranges."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __contains__(self, cp: object) -> bool:
        if not isinstance(cp, int):
            return False
        i = bisect.bisect_right(self.starts, cp) - 1
        return i >= 0 and cp <= self.ends[i]


def _ranges_format4(data: bytes, off: int) -> list[tuple[int, int]]:
    segs = struct.unpack_from(">H", data, off + 6)[0] // 2
    ends_at = off + 14
    starts_at = ends_at + 2 * segs + 2
    deltas_at = starts_at + 2 * segs
    offsets_at = deltas_at + 2 * segs
    out: list[tuple[int, int]] = []
    for i in range(segs):
        end = struct.unpack_from(">H", data, ends_at + 2 * i)[0]
        start = struct.unpack_from(">H", data, starts_at + 2 * i)[0]
        delta = struct.unpack_from(">h", data, deltas_at + 2 * i)[0]
        range_offset = struct.unpack_from(">H", data, offsets_at + 2 * i)[0]
        if start == 0xFFFF:
            continue
        if range_offset == 0:
            out.append((start, end))
            continue
        for cp in range(start, end + 1):  # glyph ids through the array: skip missing ones
            at = offsets_at + 2 * i + range_offset + 2 * (cp - start)
            glyph = struct.unpack_from(">H", data, at)[0] if at + 2 <= len(data) else 0
            if glyph and (glyph + delta) & 0xFFFF:
                out.append((cp, cp))
    return out


def _ranges_format12(data: bytes, off: int) -> list[tuple[int, int]]:
    groups = struct.unpack_from(">I", data, off + 12)[0]
    return [
        (
            struct.unpack_from(">I", data, off + 16 + 12 * i)[0],
            struct.unpack_from(">I", data, off + 20 + 12 * i)[0],
        )
        for i in range(groups)
    ]


@cache
def coverage(path: str) -> Coverage:
    """Parse the Unicode ``cmap`` subtable of a TrueType/OpenType font."""
    with open(path, "rb") as fh:
        data = fh.read()
    tables = struct.unpack_from(">H", data, 4)[0]
    cmap = -1
    for i in range(tables):
        tag, _sum, offset, _length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"cmap":
            cmap = offset
    if cmap < 0:
        return Coverage((), ())
    best: tuple[int, int] | None = None  # (priority, offset)
    for i in range(struct.unpack_from(">H", data, cmap + 2)[0]):
        platform, encoding, sub = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        fmt = struct.unpack_from(">H", data, cmap + sub)[0]
        unicode_table = platform == 0 or (platform == 3 and encoding in (1, 10))
        if unicode_table and fmt in (4, 12):
            priority = 2 if fmt == 12 else 1
            if best is None or priority > best[0]:
                best = (priority, cmap + sub)
    if best is None:
        return Coverage((), ())
    fmt = struct.unpack_from(">H", data, best[1])[0]
    ranges = _ranges_format12(data, best[1]) if fmt == 12 else _ranges_format4(data, best[1])
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return Coverage(tuple(r[0] for r in merged), tuple(r[1] for r in merged))


@cache
def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType face; the layout engine is libraqm where Pillow has it."""
    return ImageFont.truetype(path, size, layout_engine=layout_engine())


@cache
def layout_engine() -> ImageFont.Layout:
    if os.environ.get("TIDINGS_TEXT_LAYOUT", "").lower() == "basic":
        return ImageFont.Layout.BASIC
    from PIL import features

    return ImageFont.Layout.RAQM if features.check_feature("raqm") else ImageFont.Layout.BASIC


def has_raqm() -> bool:
    return layout_engine() == ImageFont.Layout.RAQM


@dataclass
class EmojiAtlas:
    """Twemoji pictures (64 px) in strips of one sheet, decoded on first use."""

    directory: str = EMOJI_DIR
    _index: dict[str, list[int]] = field(default_factory=dict)
    _meta: dict[str, int] = field(default_factory=dict)
    _strips: dict[int, Image.Image] = field(default_factory=dict)
    _cache: dict[str, Image.Image] = field(default_factory=dict)

    def _load(self) -> None:
        if self._meta:
            return
        with open(os.path.join(self.directory, "index.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        self._index = meta.pop("emoji")
        self._meta = meta

    def has(self, key: str) -> bool:
        self._load()
        return key in self._index

    def picture(self, key: str) -> Image.Image:
        """The RGBA picture (64 by 64) of the sequence with index key `key`."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        self._load()
        x, y = self._index[key]
        cell, rows = self._meta["cell"], self._meta["strip_rows"]
        strip_no = y // rows
        strip = self._strips.get(strip_no)
        if strip is None:
            with Image.open(os.path.join(self.directory, f"twemoji-{strip_no}.png")) as png:
                strip = png.copy()
            self._strips[strip_no] = strip
        left, top = x * cell + 1, (y % rows) * cell + 1
        size = self._meta["size"]
        picture = strip.crop((left, top, left + size, top + size)).convert("RGBA")
        self._cache[key] = picture
        return picture


@cache
def emoji_atlas() -> EmojiAtlas:
    return EmojiAtlas()
