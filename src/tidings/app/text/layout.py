"""Lay out a string: clusters → fonts → bidi levels → lines → visual runs.

Nothing here needs Kivy or a window: a :class:`Layout` says, line by line and left to right,
which text (or emoji) to draw with which font at which x. :mod:`.render` paints it.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from tidings.app.text import bidi, fonts
from tidings.app.text.segment import clusters, emoji_key, wants_emoji_picture
from tidings.app.text.shaping import reshape

ELLIPSIS = "\u2026"
#: No line starts with these (CJK closing punctuation, prolonged sound mark).
_NO_BREAK_BEFORE = frozenset(
    "\u3001\u3002\uff0c\uff0e\uff01\uff1f\uff09\u300d\u300f\u3011\u3015\uff1a\uff1b"
    "\u30fc\u2026\u30fb,.!?)"
)


@dataclass(frozen=True)
class Style:
    size: int
    bold: bool = False
    italic: bool = False

    @property
    def primary(self) -> str:
        return fonts.latin_font(self.bold, self.italic)

    @property
    def emoji_size(self) -> int:
        return max(1, round(self.size * 1.2))


@dataclass
class Item:
    """One grapheme cluster with what draws it."""

    text: str
    cls: str
    font: str = ""  # font file; "" for an emoji picture
    emoji: str = ""  # atlas key of an emoji picture
    level: int = 0


@dataclass
class Run:
    """A piece of one line drawn in one go, in visual order."""

    text: str  # logical order
    font: str
    emoji: str
    rtl: bool
    x: float = 0.0
    width: float = 0.0


@dataclass
class Line:
    runs: list[Run]
    width: float
    ascent: int
    descent: int
    rtl: bool


@dataclass
class Layout:
    lines: list[Line] = field(default_factory=list)
    style: Style = field(default_factory=lambda: Style(15))
    shortened: bool = False

    @property
    def width(self) -> float:
        return max((ln.width for ln in self.lines), default=0.0)

    @property
    def height(self) -> int:
        return sum(ln.ascent + ln.descent for ln in self.lines)


def _is_cjk(cp: int) -> bool:
    return (
        0x2E80 <= cp <= 0x9FFF
        or 0xAC00 <= cp <= 0xD7AF
        or 0xF900 <= cp <= 0xFAFF
        or 0xFF00 <= cp <= 0xFFEF
        or 0x20000 <= cp <= 0x3FFFF
    )


def pick_font(cp: int, style: Style, prev: str) -> str:
    """The first font of the chain that has `cp`; neutrals stay in the previous font."""
    neutral = unicodedata.bidirectional(chr(cp)) not in ("L", "R", "AL")
    if prev and neutral and cp in fonts.coverage(prev):
        return prev
    for path in (style.primary, *fonts.fallback_fonts()):
        if cp in fonts.coverage(path):
            return path
    return style.primary  # nobody has it: the primary font's missing-glyph box


def itemize(text: str, style: Style) -> list[Item]:
    """Clusters of one paragraph with their font or emoji picture and bidi class."""
    atlas = fonts.emoji_atlas()
    items: list[Item] = []
    prev = ""
    for cluster in clusters(text):
        if wants_emoji_picture(cluster):
            key = emoji_key(cluster)
            if not atlas.has(key) and len(cluster) > 1:
                key = emoji_key(cluster[0])  # an unknown sequence: its first emoji
            if atlas.has(key):
                items.append(Item(cluster, "ON", emoji=key))
                prev = ""
                continue
        cls = bidi.bidi_class(cluster)
        prev = pick_font(ord(cluster[0]), style, prev)
        items.append(Item(cluster, cls, font=prev))
    return items


@lru_cache(maxsize=4096)
def run_width(text: str, font_path: str, size: int, rtl: bool) -> float:
    face = fonts.font(font_path, size)
    if fonts.has_raqm():
        return float(face.getlength(text, direction="rtl" if rtl else "ltr"))
    return float(face.getlength(reshape(text) if rtl else text))


def _groups(items: Sequence[Item]) -> list[list[Item]]:
    """Consecutive items drawn in one run: same font and direction; emoji one by one."""
    out: list[list[Item]] = []
    for item in items:
        last = out[-1][-1] if out else None
        if (
            last is not None
            and not item.emoji
            and not last.emoji
            and last.font == item.font
            and last.level % 2 == item.level % 2
        ):
            out[-1].append(item)
        else:
            out.append([item])
    return out


def width_of(items: Sequence[Item], style: Style) -> float:
    total = 0.0
    for group in _groups(items):
        if group[0].emoji:
            total += style.emoji_size
        else:
            text = "".join(i.text for i in group)
            total += run_width(text, group[0].font, style.size, group[0].level % 2 == 1)
    return total


def _breaks(items: Sequence[Item]) -> list[int]:
    """Indices before which a line may break."""
    out: list[int] = []
    for i in range(1, len(items)):
        prev, cur = items[i - 1], items[i]
        if cur.text in _NO_BREAK_BEFORE or cur.cls == "WS":
            continue
        cjk = _is_cjk(ord(prev.text[0])) or _is_cjk(ord(cur.text[0]))
        if prev.cls == "WS" or prev.emoji or cur.emoji or cjk:
            out.append(i)
    return out


def _wrap(items: list[Item], style: Style, width: float | None) -> list[tuple[int, int]]:
    if width is None or not items:
        return [(0, len(items))]
    bounds = [0, *_breaks(items), len(items)]
    lines: list[tuple[int, int]] = []
    start, x = 0, 0.0
    for a, b in itertools.pairwise(bounds):
        word = items[a:b]
        content = len(word)
        while content and word[content - 1].cls == "WS":
            content -= 1
        w_content = width_of(word[:content], style)
        if x > 0 and x + w_content > width:
            lines.append((start, a))
            start, x = a, 0.0
        if w_content > width:  # longer than a line on its own: break between clusters
            for k in range(a, b):
                w = width_of(items[k : k + 1], style)
                if x > 0 and x + w > width:
                    lines.append((start, k))
                    start, x = k, 0.0
                x += w
            continue
        x += width_of(word, style)
    lines.append((start, len(items)))
    return lines


def _line(items: list[Item], style: Style, base: int) -> Line:
    while len(items) > 1 and items[-1].cls == "WS":
        items = items[:-1]
    levels = bidi.line_levels([i.level for i in items], [i.cls for i in items], base)
    for item, level in zip(items, levels, strict=True):
        item.level = level
    visual = [items[k] for k in bidi.visual_order(levels)]
    runs: list[Run] = []
    x = 0.0
    ascent, descent = fonts.font(style.primary, style.size).getmetrics()
    base_ascent, base_descent = ascent, descent
    for group in _groups(visual):
        rtl = group[0].level % 2 == 1
        if group[0].emoji:
            run = Run(group[0].text, "", group[0].emoji, rtl, x, float(style.emoji_size))
            ascent = max(ascent, style.emoji_size - style.size // 5)
        else:
            logical = group[::-1] if rtl else group
            text = "".join(i.text for i in logical)
            w = run_width(text, group[0].font, style.size, rtl)
            run = Run(text, group[0].font, "", rtl, x, w)
            # tall fallback fonts (Noto Sans Arabic) may add a little, not a whole line
            a, d = fonts.font(group[0].font, style.size).getmetrics()
            ascent = max(ascent, min(a, round(base_ascent * 1.15)))
            descent = max(descent, min(d, round(base_descent * 1.3)))
        runs.append(run)
        x += run.width
    return Line(runs, x, ascent, descent, base == 1)


def _shorten(items: list[Item], style: Style, width: float | None, base: int) -> list[Item]:
    cut = list(items)
    while cut and cut[-1].cls == "WS":
        cut.pop()
    mark = Item(ELLIPSIS, "ON", font=pick_font(ord(ELLIPSIS), style, ""), level=base)
    while cut and width is not None and width_of([*cut, mark], style) > width:
        cut.pop()
    return [*cut, mark]


def layout(
    text: str,
    style: Style,
    width: float | None = None,
    max_lines: int = 0,
    shorten: bool = False,
) -> Layout:
    """Lay out `text` (paragraphs split at newlines), wrapping at `width` if given.

    With `max_lines`, text beyond that many lines is cut; `shorten` then ends the last
    line with an ellipsis."""
    result = Layout(style=style)
    paragraphs = text.split("\n")
    for p_no, paragraph in enumerate(paragraphs):
        items = itemize(paragraph, style)
        base = bidi.paragraph_level([i.cls for i in items])
        for item, level in zip(
            items, bidi.resolve_levels([i.cls for i in items], base), strict=True
        ):
            item.level = level
        spans = _wrap(items, style, width)
        for s_no, (a, b) in enumerate(spans):
            if max_lines and len(result.lines) == max_lines - 1:
                more = s_no < len(spans) - 1 or p_no < len(paragraphs) - 1
                line_items = items[a:]
                if more and shorten:
                    line_items = _shorten(line_items, style, width, base)
                    result.shortened = True
                elif more:
                    line_items = items[a:b]
                result.lines.append(_line(line_items, style, base))
                return result
            result.lines.append(_line(items[a:b], style, base))
    return result
