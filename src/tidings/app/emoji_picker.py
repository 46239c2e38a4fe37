"""The emoji picker: every emoji of the packaged Twemoji index (``app/emoji/index.json``) in a
grid, one category at a time, with a search field.

The index has no categories or names, so both are derived here: a category from the first
code point's block (flags from their regional indicators), a name from the Unicode names of
its code points (and, for a flag, the country's name from Babel's CLDR data when Babel is
installed). Skin-tone variants are left out of the grid. Only emoji can be chosen: every cell
is an index entry that the client core's :func:`~tidings.client.graphemes.is_emoji` accepts.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kivy.core.image import Image as CoreImage
from kivy.core.window import Window
from kivy.graphics.texture import Texture
from kivy.metrics import dp
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.image import Image
from kivy.uix.modalview import ModalView

from tidings.app.widgets import Chip
from tidings.client.graphemes import is_emoji, is_skin_tone

EMOJI_DIR = Path(__file__).parent / "emoji"
#: search results shown at most
MAX_RESULTS = 160
CELL = 44

#: (category, code point ranges of the first code point); first match wins, the rest is
#: "Symbols"
_CATEGORIES: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    (
        "Smileys & people",
        (
            (0x1F600, 0x1F64F),
            (0x1F910, 0x1F92F),
            (0x1F970, 0x1F97F),
            (0x263A, 0x263A),
            (0x2639, 0x2639),
            (0x1FAE0, 0x1FAFF),
            (0x1F9D0, 0x1F9FF),
            (0x1F466, 0x1F487),
            (0x1F442, 0x1F450),
            (0x1F4A9, 0x1F4A9),
            (0x1F480, 0x1F480),
            (0x1F90C, 0x1F90F),
            (0x1F918, 0x1F91F),
            (0x1F930, 0x1F93E),
            (0x1FAE0, 0x1FAFF),
            (0x1F9B0, 0x1F9BF),
            (0x1F3C2, 0x1F3CC),
            (0x1F574, 0x1F575),
            (0x1F57A, 0x1F57A),
            (0x1F590, 0x1F596),
            (0x1F6A3, 0x1F6A3),
            (0x1F6B4, 0x1F6B6),
            (0x1F6C0, 0x1F6C0),
            (0x1F6CC, 0x1F6CC),
            (0x261D, 0x261D),
            (0x263A, 0x263A),
            (0x2639, 0x2639),
            (0x26F9, 0x26F9),
            (0x270A, 0x270D),
            (0x1F385, 0x1F385),
        ),
    ),
    (
        "Animals & nature",
        (
            (0x1F400, 0x1F43F),
            (0x1F980, 0x1F9AF),
            (0x1F330, 0x1F344),
            (0x1F490, 0x1F490),
            (0x1F4AE, 0x1F4AE),
            (0x1F338, 0x1F33F),
            (0x1FAB0, 0x1FABF),
            (0x1F577, 0x1F578),
            (0x1F940, 0x1F940),
        ),
    ),
    (
        "Food & drink",
        ((0x1F345, 0x1F37F), (0x1F950, 0x1F96F), (0x1F9C0, 0x1F9CF), (0x1FAD0, 0x1FADF)),
    ),
    (
        "Activities",
        (
            (0x1F380, 0x1F3C1),
            (0x1F3CD, 0x1F3D3),
            (0x1F941, 0x1F94F),
            (0x1F93F, 0x1F93F),
            (0x26BD, 0x26BE),
            (0x26F3, 0x26F3),
            (0x1FA80, 0x1FAAF),
            (0x1F0CF, 0x1F0CF),
            (0x1F004, 0x1F004),
        ),
    ),
    (
        "Travel & places",
        (
            (0x1F680, 0x1F6FF),
            (0x1F300, 0x1F32F),
            (0x1F3D4, 0x1F3F0),
            (0x26E9, 0x26FF),
            (0x2600, 0x2604),
            (0x2708, 0x2708),
        ),
    ),
    ("Objects", ((0x1F4A0, 0x1F4FF), (0x1F500, 0x1F53D), (0x1F54A, 0x1F5FF), (0x231A, 0x23FF))),
)
FLAGS = "Flags"
SYMBOLS = "Symbols"
CATEGORY_ORDER = (*(name for name, _ in _CATEGORIES), SYMBOLS, FLAGS)
#: the emoji on each category's tab
TAB_ICONS = {
    "Smileys & people": "\U0001f600",
    "Animals & nature": "\U0001f43b",
    "Food & drink": "\U0001f34e",
    "Activities": "\u26bd",
    "Travel & places": "\U0001f697",
    "Objects": "\U0001f4a1",
    SYMBOLS: "\U0001f523",
    FLAGS: "\U0001f3c1",
}


@dataclass(frozen=True)
class Emoji:
    text: str
    key: str
    category: str
    name: str
    #: (column, row) in the sheet
    cell: tuple[int, int]


def _category(cps: list[int]) -> tuple[str, int]:
    """The category of a sequence and where in it it goes (the rank of its range)."""
    first = cps[0]
    if 0x1F1E6 <= first <= 0x1F1FF or first in (0x1F3F4, 0x1F3F3, 0x1F3C1, 0x1F6A9, 0x1F38C):
        return FLAGS, 0
    for name, ranges in _CATEGORIES:
        for rank, (lo, hi) in enumerate(ranges):
            if lo <= first <= hi:
                return name, rank
    return SYMBOLS, 0


def _country(cps: list[int]) -> str:
    code = "".join(chr(cp - 0x1F1E6 + ord("A")) for cp in cps if 0x1F1E6 <= cp <= 0x1F1FF)
    try:
        from babel import Locale

        return str(Locale("en").territories.get(code, code))
    except ImportError:  # pragma: no cover
        return code


def _name(cps: list[int]) -> str:
    if len(cps) == 2 and all(0x1F1E6 <= cp <= 0x1F1FF for cp in cps):
        return f"flag {_country(cps)}".lower()
    words = [unicodedata.name(chr(cp), "") for cp in cps if cp not in (0x200D, 0xFE0F)]
    return " ".join(w for w in words if w).lower()


def _text(cps: list[int]) -> str:
    text = "".join(chr(cp) for cp in cps)
    # a lone symbol with a text default (❤, ☺, 🅰) is sent in its emoji presentation
    if len(cps) == 1 and (cps[0] < 0x1F000 or 0x1F170 <= cps[0] <= 0x1F251):
        text += "\ufe0f"
    return text


@cache
def catalogue() -> tuple[Emoji, ...]:
    """Every choosable emoji of the index, in code point order within its category."""
    meta = json.loads((EMOJI_DIR / "index.json").read_text(encoding="utf-8"))
    found: list[tuple[int, list[int], Emoji]] = []
    for key, (column, row) in meta["emoji"].items():
        cps = [int(p, 16) for p in key.split("-")]
        if any(is_skin_tone(cp) for cp in cps):
            continue
        text = _text(cps)
        if not is_emoji(text):
            continue
        category, rank = _category(cps)
        found.append((rank, cps, Emoji(text, key, category, _name(cps), (column, row))))
    found.sort(key=lambda item: (item[0], item[1]))
    return tuple(emoji for _rank, _cps, emoji in found)


def search(query: str, limit: int = MAX_RESULTS) -> list[Emoji]:
    """Emoji whose name has every word of `query` (as a word start)."""
    words = query.lower().split()
    if not words:
        return []
    hits: list[Emoji] = []
    for emoji in catalogue():
        names = emoji.name.split()
        if all(any(n.startswith(w) for n in names) for w in words):
            hits.append(emoji)
            if len(hits) >= limit:
                break
    return hits


class _Sheet:
    """The sheet's strips as textures, cut into cells on demand."""

    def __init__(self) -> None:
        meta = json.loads((EMOJI_DIR / "index.json").read_text(encoding="utf-8"))
        self.cell = int(meta["cell"])
        self.size = int(meta["size"])
        self.rows = int(meta["strip_rows"])
        self.strips: dict[int, Texture] = {}

    def texture(self, cell: tuple[int, int]) -> Texture:
        column, row = cell
        number = row // self.rows
        strip = self.strips.get(number)
        if strip is None:
            strip = CoreImage(str(EMOJI_DIR / f"twemoji-{number}.png")).texture
            self.strips[number] = strip
        # texture regions count from the bottom
        top = (row % self.rows) * self.cell + 1
        y = strip.height - top - self.size
        return strip.get_region(column * self.cell + 1, y, self.size, self.size)


@cache
def _sheet() -> _Sheet:
    return _Sheet()


class EmojiCell(ButtonBehavior, Image):  # type: ignore[misc]  # kivy is untyped
    """One emoji of the grid."""

    def __init__(self, emoji: Emoji, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emoji = emoji
        self.texture = _sheet().texture(emoji.cell)


class EmojiPicker(ModalView):  # type: ignore[misc]
    """Choose any emoji; `on_pick(text)` gets it. Its looks are in kv/everyday.kv."""

    def __init__(self, on_pick: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if Window.width > dp(560):
            self.size_hint_x = None
            self.width = dp(520)
            self.pos_hint = {"center_x": 0.5, "y": 0}
        self.on_pick = on_pick
        self.category = CATEGORY_ORDER[0]
        self.tabs: dict[str, Chip] = {}
        present = {emoji.category for emoji in catalogue()}
        for name in CATEGORY_ORDER:
            if name not in present:
                continue
            tab = Chip(text=TAB_ICONS[name], font_size=dp(18))
            tab.height = dp(36)
            tab.bind(on_release=self._tab(name))
            self.tabs[name] = tab
            self.ids.tabs.add_widget(tab)
        self.ids.query.bind(text=lambda _f, text: self.show(text))
        grid = self.ids.grid
        self.ids.scroller.bind(
            width=lambda _s, width: setattr(grid, "cols", max(1, int(width // dp(CELL))))
        )
        self.show("")

    def _tab(self, name: str) -> Callable[[Any], None]:
        def switch(_tab: Any) -> None:
            self.category = name
            self.ids.query.text = ""
            self.show("")

        return switch

    def show(self, query: str) -> None:
        """The grid of the current category, or the search results for `query`."""
        grid = self.ids.grid
        grid.clear_widgets()
        if query.strip():
            shown = search(query)
            self.ids.heading.text = f"{len(shown)} found" if shown else "No emoji found"
        else:
            shown = [e for e in catalogue() if e.category == self.category]
            self.ids.heading.text = self.category
        for name, tab in self.tabs.items():
            tab.selected = not query.strip() and name == self.category
        for emoji in shown:
            cell = EmojiCell(emoji, size_hint=(None, None), size=(dp(CELL), dp(CELL)))
            cell.bind(on_release=self._picker(emoji))
            grid.add_widget(cell)
        self.ids.scroller.scroll_y = 1

    def _picker(self, emoji: Emoji) -> Callable[[Any], None]:
        def pick(_cell: Any) -> None:
            self.pick(emoji.text)

        return pick

    def pick(self, text: str) -> None:
        if not is_emoji(text):  # the grid holds emoji only; keep it so
            return
        self.dismiss()
        self.on_pick(text)

    def cells(self) -> list[EmojiCell]:
        return [c for c in self.ids.grid.children if isinstance(c, EmojiCell)][::-1]
