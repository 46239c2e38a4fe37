"""How the app turns user text, snippets and times into what it draws."""

from __future__ import annotations

import datetime as dt

import pytest

from tidings.app import timefmt
from tidings.app.screens.search import snippet_markup
from tidings.app.theme import SYMBOL_FONT, initials, rich

pytestmark = pytest.mark.ui


def test_rich_escapes_markup_and_switches_font_for_symbols() -> None:
    assert rich("a [b]c[/b] & d") == "a &bl;b&br;c&bl;/b&br; &amp; d"
    assert rich("ok \u2714 done") == f"ok [font={SYMBOL_FONT}]\u2714[/font] done"
    assert rich("\U0001f602\U0001f62e") == f"[font={SYMBOL_FONT}]\U0001f602\U0001f62e[/font]"
    assert rich("") == ""


def test_snippet_matches_are_highlighted_and_the_rest_escaped() -> None:
    markup = snippet_markup("meet at the [zebra] crossing [now]", [1.0, 0.0, 0.0, 1.0])
    assert markup == (
        "meet at the [b][color=#ff0000ff]zebra[/color][/b] crossing "
        "[b][color=#ff0000ff]now[/color][/b]"
    )


def test_initials() -> None:
    assert initials("alice") == "AL"
    assert initials("Weekend hike") == "WH"
    assert initials("mary_ann") == "MA"
    assert initials("x") == "X"
    assert initials("") == "?"


def test_times_read_like_a_messenger() -> None:
    now = dt.datetime(2026, 11, 28, 15, 0).astimezone()
    timefmt.set_locale("en_GB")  # test_ui_everyday covers en_US and de_DE

    def ms(when: dt.datetime) -> int:
        return int(when.timestamp() * 1000)

    assert timefmt.list_stamp(ms(now.replace(hour=9, minute=5)), now) == "09:05"
    assert timefmt.list_stamp(ms(now - dt.timedelta(days=1)), now) == "Yesterday"
    assert timefmt.list_stamp(ms(now - dt.timedelta(days=3)), now) == "Wed"
    assert timefmt.list_stamp(ms(now - dt.timedelta(days=30)), now) == "29/10/2026"
    assert timefmt.day_label(now.date(), now) == "Today"
    assert timefmt.day_label(dt.date(2026, 11, 27), now) == "Yesterday"
    assert timefmt.day_label(dt.date(2026, 11, 2), now) == "Monday, 2 November"
    assert timefmt.day_label(dt.date(2025, 3, 9), now) == "9 March 2025"
    timefmt.set_locale(None)


def test_the_symbol_font_has_the_ticks_and_quick_reactions() -> None:
    from kivy.core.text import Label as CoreLabel
    from kivy.core.window import Window

    from tidings.app.theme import (
        QUICK_REACTIONS,
        TICK_DOUBLE,
        TICK_SENDING,
        TICK_SENT,
        register_fonts,
    )

    assert Window is not None  # text rendering needs the GL window
    register_fonts()

    def pixels(text: str) -> bytes:
        label = CoreLabel(text=text, font_name=SYMBOL_FONT, font_size=32)
        label.refresh()
        return bytes(label.texture.pixels)

    missing = pixels("\uffff")  # a non-character: drawn as the font's "missing glyph" box
    for symbol in (TICK_SENDING, TICK_SENT, TICK_DOUBLE[0], "\u2190", "\u27a4", *QUICK_REACTIONS):
        assert pixels(symbol) != missing, f"U+{ord(symbol):04X} has no glyph"
