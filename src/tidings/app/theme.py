"""Colours, type and fonts of the app, light and dark.

`Theme` is an EventDispatcher whose colour properties the KV rules bind to (``app.theme.bg``), so
switching palettes restyles every screen at once. Text uses Roboto (bundled with Kivy); the
symbols a messenger needs — status ticks, arrows, a few emoji — are not in Roboto, so they are
drawn with DejaVu Sans (also bundled with Kivy, hence present on Android too). :func:`rich`
turns user text into Kivy markup that switches to the symbol font for such characters.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import kivy
from kivy.core.text import LabelBase
from kivy.event import EventDispatcher
from kivy.properties import ColorProperty, StringProperty
from kivy.utils import escape_markup, get_color_from_hex

SYMBOL_FONT = "TidingsSymbols"
#: Safety numbers and link codes: digits and letters that line up (Roboto Mono, bundled too).
MONO_FONT = "TidingsMono"
TEXT_FONT = "Roboto"

#: Reactions offered by the quick-react bar: all of them have glyphs in the symbol font.
QUICK_REACTIONS: tuple[str, ...] = ("\u2764", "\U0001f602", "\U0001f62e", "\U0001f622", "\u2714")

#: The avatar of the Note to Self chat (a writing hand, in the symbol font).
NOTE_ICON = "\u270d"

#: Status marks of own messages (rendered with the symbol font).
TICK_SENDING = "\u25f7"
TICK_SENT = "\u2713"
TICK_DOUBLE = "\u2713\u2713"
TICK_FAILED = "!"

# Roboto covers Latin, Greek, Cyrillic, general punctuation and currency signs; from the
# letterlike symbols block on, characters are drawn with the symbol font.
_FIRST_SYMBOL_CODEPOINT = 0x2100

_PALETTES: dict[str, dict[str, str]] = {
    "light": {
        "bg": "#f4f6f9",
        "surface": "#ffffff",
        "surface_alt": "#eef1f5",
        "bar": "#ffffff",
        "text": "#14181f",
        "text_muted": "#6b7480",
        "divider": "#e3e7ec",
        "primary": "#2f6fed",
        "primary_text": "#ffffff",
        "bubble_own": "#2f6fed",
        "bubble_own_text": "#ffffff",
        "bubble_own_muted": "#c2d5ff",
        "bubble_other": "#ffffff",
        "bubble_other_text": "#14181f",
        "bubble_other_muted": "#7b8490",
        "chat_bg": "#e9edf2",
        "quote_bar": "#2f6fed",
        "tick_read": "#5ff5b5",
        "badge": "#2f6fed",
        "danger": "#d93f3f",
        "warning": "#e0932b",
        "online": "#23a55a",
        "highlight": "#ffe27a",
        "chip": "#ffffff",
        "chip_own": "#dce7ff",
        "separator_bg": "#d8dee6",
        "input_bg": "#eef1f5",
    },
    "dark": {
        "bg": "#0f1318",
        "surface": "#171c23",
        "surface_alt": "#1f262f",
        "bar": "#171c23",
        "text": "#e8ecf1",
        "text_muted": "#8b95a1",
        "divider": "#252d37",
        "primary": "#4c8dff",
        "primary_text": "#ffffff",
        "bubble_own": "#2d5fc4",
        "bubble_own_text": "#ffffff",
        "bubble_own_muted": "#b7cbf3",
        "bubble_other": "#222a34",
        "bubble_other_text": "#e8ecf1",
        "bubble_other_muted": "#8b95a1",
        "chat_bg": "#0b0f13",
        "quote_bar": "#7aa8ff",
        "tick_read": "#7df0bd",
        "badge": "#4c8dff",
        "danger": "#ef5b5b",
        "warning": "#f0a53a",
        "online": "#3cc477",
        "highlight": "#6b5a12",
        "chip": "#222a34",
        "chip_own": "#24406f",
        "separator_bg": "#1f262f",
        "input_bg": "#1f262f",
    },
}

#: Avatar colours, picked by a stable hash of the name.
_AVATAR_COLOURS: Sequence[str] = (
    "#e57373",
    "#f06292",
    "#ba68c8",
    "#7986cb",
    "#4fc3f7",
    "#4db6ac",
    "#81c784",
    "#ffb74d",
    "#a1887f",
    "#90a4ae",
)


def register_fonts() -> None:
    """Make the symbol and the monospace font known to Kivy (:data:`SYMBOL_FONT`,
    :data:`MONO_FONT`)."""
    fonts = os.path.join(os.path.dirname(kivy.__file__), "data", "fonts")
    LabelBase.register(name=SYMBOL_FONT, fn_regular=os.path.join(fonts, "DejaVuSans.ttf"))
    LabelBase.register(name=MONO_FONT, fn_regular=os.path.join(fonts, "RobotoMono-Regular.ttf"))


def rich(text: str) -> str:
    """Kivy markup for user text: escaped, with symbol characters switched to the symbol font."""
    out: list[str] = []
    run: list[str] = []
    in_symbols = False
    for ch in text:
        is_symbol = ord(ch) >= _FIRST_SYMBOL_CODEPOINT
        if is_symbol != in_symbols and run:
            out.append(_span("".join(run), in_symbols))
            run = []
        in_symbols = is_symbol
        run.append(ch)
    if run:
        out.append(_span("".join(run), in_symbols))
    return "".join(out)


def _span(text: str, symbols: bool) -> str:
    escaped = escape_markup(text)
    return f"[font={SYMBOL_FONT}]{escaped}[/font]" if symbols else escaped


def avatar_colour(name: str) -> list[float]:
    digest = hashlib.sha256(name.encode()).digest()
    return list(get_color_from_hex(_AVATAR_COLOURS[digest[0] % len(_AVATAR_COLOURS)]))


def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper() if len(parts[0]) > 1 else parts[0].upper()
    return (parts[0][0] + parts[1][0]).upper()


class Theme(EventDispatcher):  # type: ignore[misc]  # kivy is untyped
    """The current palette; KV rules bind to its colour properties."""

    name = StringProperty("light")
    bg = ColorProperty()
    surface = ColorProperty()
    surface_alt = ColorProperty()
    bar = ColorProperty()
    text = ColorProperty()
    text_muted = ColorProperty()
    divider = ColorProperty()
    primary = ColorProperty()
    primary_text = ColorProperty()
    bubble_own = ColorProperty()
    bubble_own_text = ColorProperty()
    bubble_own_muted = ColorProperty()
    bubble_other = ColorProperty()
    bubble_other_text = ColorProperty()
    bubble_other_muted = ColorProperty()
    chat_bg = ColorProperty()
    quote_bar = ColorProperty()
    tick_read = ColorProperty()
    badge = ColorProperty()
    danger = ColorProperty()
    warning = ColorProperty()
    online = ColorProperty()
    highlight = ColorProperty()
    chip = ColorProperty()
    chip_own = ColorProperty()
    separator_bg = ColorProperty()
    input_bg = ColorProperty()

    def __init__(self, name: str = "light") -> None:
        super().__init__()
        self.apply(name)

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(_PALETTES)

    def apply(self, name: str) -> None:
        palette = _PALETTES[name]
        for key, value in palette.items():
            setattr(self, key, get_color_from_hex(value))
        self.name = name
