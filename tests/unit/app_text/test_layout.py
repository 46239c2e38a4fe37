"""Fonts, wrapping, alignment and both layout paths of the app's text engine (no window)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from tidings.app.text import Style, fonts, layout, render
from tidings.app.text.render import basic_visual


@pytest.fixture(params=["raqm", "basic"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TIDINGS_TEXT_LAYOUT", request.param)
    fonts.layout_engine.cache_clear()
    fonts.font.cache_clear()
    layout_module = importlib.import_module("tidings.app.text.layout")
    layout_module.run_width.cache_clear()
    yield request.param
    fonts.layout_engine.cache_clear()
    fonts.font.cache_clear()
    layout_module.run_width.cache_clear()


def test_each_script_finds_a_font_with_its_glyphs() -> None:
    style = Style(20)
    lay = layout("Aé Ж 你 か 한 م ש", style)
    used = {run.font.rsplit("/", 1)[-1] for run in lay.lines[0].runs}
    assert {"NotoSansArabic-Regular.ttf", "NotoSansHebrew-Regular.ttf"} <= used
    assert "DroidSansFallbackFull.ttf" in used
    assert any(name.startswith("Roboto") for name in used)
    assert 0x4F60 in fonts.coverage(fonts.fallback_fonts()[-1])
    assert 0x4F60 not in fonts.coverage(fonts.latin_font())


def test_emoji_become_pictures() -> None:
    lay = layout("hi \U0001f1e9\U0001f1ea!", Style(20))
    assert [r.emoji for r in lay.lines[0].runs if r.emoji] == ["1f1e9-1f1ea"]
    picture = fonts.emoji_atlas().picture("1f1e9-1f1ea")
    assert picture.size == (64, 64) and picture.getbbox()


def test_wrapping_keeps_within_the_width(engine: str) -> None:
    style = Style(18)
    text = "The quick brown fox jumps over the lazy dog " * 3
    lay = layout(text, style, width=200)
    assert len(lay.lines) > 3
    assert all(line.width <= 200 for line in lay.lines)
    cjk = layout("今天天气很好我们去公园散步吧", style, width=100)
    assert len(cjk.lines) > 1 and all(line.width <= 100 for line in cjk.lines)


def test_max_lines_with_an_ellipsis(engine: str) -> None:
    lay = layout(
        "one two three four five six seven", Style(18), width=90, max_lines=1, shorten=True
    )
    assert len(lay.lines) == 1 and lay.shortened
    assert lay.lines[0].runs[-1].text.endswith("\u2026")


def test_right_to_left_lines_align_right(engine: str) -> None:
    lay = layout("שלום", Style(20))
    image = render(lay, (0, 0, 0, 1), box=(300, None))
    bbox = image.getbbox()
    assert bbox is not None and bbox[0] > 150 and bbox[2] > 280


def test_arabic_is_joined_in_both_paths(engine: str) -> None:
    style = Style(24)
    joined = layout("مرحبا", style).width
    apart = sum(layout(c, style).width for c in "مرحبا")
    assert abs(joined - apart) > 2


def test_the_basic_path_reverses_and_mirrors() -> None:
    assert basic_visual("(אב)", rtl=True) == "(בא)"
    assert basic_visual("abc", rtl=False) == "abc"
