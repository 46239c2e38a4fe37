"""Clusters, emoji sequences and the bidi algorithm of the app's text engine (no Kivy)."""

from __future__ import annotations

from tidings.app.text.bidi import is_rtl, paragraph_level, resolve_levels, visual_order
from tidings.app.text.segment import clusters, emoji_key, wants_emoji_picture
from tidings.app.text.shaping import reshape

FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
FLAG_DE = "\U0001f1e9\U0001f1ea"
THUMB_TONE = "\U0001f44d\U0001f3fd"
KEYCAP = "#\ufe0f\u20e3"
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"


def test_emoji_sequences_are_single_clusters() -> None:
    text = f"a{FAMILY}{FLAG_DE}{FLAG_DE}{THUMB_TONE}{KEYCAP}{SCOTLAND}\u2764\ufe0fb"
    assert clusters(text) == [
        "a", FAMILY, FLAG_DE, FLAG_DE, THUMB_TONE, KEYCAP, SCOTLAND, "\u2764\ufe0f", "b"
    ]  # fmt: skip


def test_marks_hangul_and_crlf_stay_together() -> None:
    assert clusters("e\u0301x") == ["e\u0301", "x"]
    assert clusters("\u1100\u1161\u11a8") == ["\u1100\u1161\u11a8"]
    assert clusters("a\r\nb") == ["a", "\r\n", "b"]
    assert clusters("\u0628\u0650") == ["\u0628\u0650"]  # Arabic letter with kasra


def test_a_zwj_between_letters_does_not_glue_them() -> None:
    assert clusters("\u0644\u200d\u0627") == ["\u0644\u200d", "\u0627"]


def test_emoji_pictures_and_keys() -> None:
    assert wants_emoji_picture(FAMILY) and wants_emoji_picture(FLAG_DE)
    assert wants_emoji_picture("\u2764") and wants_emoji_picture(KEYCAP)
    assert not wants_emoji_picture("#") and not wants_emoji_picture("\u00a9")
    assert not wants_emoji_picture("\u2764\ufe0e")
    assert emoji_key(KEYCAP) == "23-20e3"
    assert emoji_key(FAMILY) == "1f469-200d-1f469-200d-1f467-200d-1f466"


def test_paragraph_direction_from_the_first_strong_character() -> None:
    assert is_rtl("123 שלום abc")
    assert not is_rtl("abc שלום")
    assert paragraph_level(["ON", "EN"]) == 0


def test_levels_and_visual_order_of_mixed_text() -> None:
    # "abc אבג def": the Hebrew word is reversed in place
    classes = ["L", "L", "L", "WS", "R", "R", "R", "WS", "L"]
    levels = resolve_levels(classes, 0)
    assert levels == [0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert visual_order(levels) == [0, 1, 2, 3, 6, 5, 4, 7, 8]


def test_numbers_in_right_to_left_text_keep_their_order() -> None:
    # "אב 12" in an RTL paragraph: the number reads left to right, at the left
    classes = ["R", "R", "WS", "EN", "EN"]
    levels = resolve_levels(classes, 1)
    assert levels == [1, 1, 1, 2, 2]
    assert visual_order(levels) == [3, 4, 2, 1, 0]


def test_arabic_letters_get_their_joining_forms() -> None:
    shaped = reshape("مرحبا")
    assert [hex(ord(c)) for c in shaped] == ["0xfee3", "0xfeae", "0xfea3", "0xfe92", "0xfe8e"]
    assert reshape("لا") == "\ufefb"  # lam-alef ligature
    assert reshape("ab") == "ab"
