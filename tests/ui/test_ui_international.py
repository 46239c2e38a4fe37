"""Emoji, Chinese, Japanese, Arabic and Hebrew in bubbles, the chat list and reactions.

The pictures are checked, not just the strings: no glyph may look like the missing-glyph box
("tofu"), emoji must bring colour, an Arabic word must be drawn joined, and a right-to-left
paragraph must start at the right."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, rows_with

pytestmark = pytest.mark.ui

EMOJI = "Party \U0001f389\U0001f355 family \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 flag \U0001f1e9\U0001f1ea"  # noqa: E501
CHINESE = "你好，世界！今天天气很好。"  # noqa: RUF001
JAPANESE = "こんにちは、世界。カタカナと漢字"
ARABIC = "مرحبا بالعالم"
HEBREW = "\U0001f389 שלום עולם \U0001f355"
LONG_ARABIC = "هذه رسالة طويلة باللغة العربية يجب أن تلتف على عدة أسطر داخل الفقاعة"
PREVIEW = "Hallo \U0001f1e9\U0001f1ea 你好 こんにちは مرحبا שלום \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # noqa: E501
MESSAGES = (EMOJI, CHINESE, JAPANESE, ARABIC, HEBREW, LONG_ARABIC, PREVIEW)


def image_of(label: Any) -> Image.Image:
    """A label's texture as a top-down RGBA image."""
    texture = label.texture
    image = Image.frombytes("RGBA", tuple(texture.size), bytes(texture.pixels))
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def colourful_columns(image: Image.Image) -> list[int]:
    """x of every column with a saturated, opaque pixel (emoji; the text colour is grey)."""
    px = image.load()
    assert px is not None
    cols = []
    for x in range(image.width):
        for y in range(image.height):
            r, g, b, a = px[x, y]
            if a > 200 and max(r, g, b) - min(r, g, b) > 80:
                cols.append(x)
                break
    return cols


def ink_columns(image: Image.Image) -> list[int]:
    alpha = image.getchannel("A")
    return [x for x in range(image.width) if alpha.crop((x, 0, x + 1, image.height)).getbbox()]


def assert_no_tofu(label: Any) -> None:
    """Each cluster, drawn with the font the engine chose, differs from the missing-glyph box
    of the primary font and of that font itself."""
    from tidings.app.text import Style, layout, render
    from tidings.app.text.segment import clusters

    lay = label.text_layout
    style = Style(lay.style.size)
    tofu = render(layout("\uffff", style), (0, 0, 0, 1)).tobytes()
    assert tofu.strip(b"\x00"), "the missing-glyph box has ink"
    for line in lay.lines:
        for run in line.runs:
            if run.emoji:
                continue
            for cluster in clusters(run.text):
                if not cluster.strip():
                    continue
                drawn = render(layout(cluster, style), (0, 0, 0, 1)).tobytes()
                assert drawn != tofu, f"{cluster!r} ({run.font}) is drawn as tofu"


async def test_world_scripts_and_emoji_in_bubbles_list_and_reactions(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, shots: Shots
) -> None:
    from tidings.app.text import Style, layout
    from tidings.app.text.layout import width_of

    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv = await bob.open_direct("alice")
    sent = {}
    for text in MESSAGES:
        sent[text] = await bob.send_text(conv.id, text)
    await bob.react(conv.id, sent[CHINESE].id, "\U0001f389")

    # the chat list: the preview line of the last message, emoji and five scripts
    listing = chat_list(driver)
    await driver.wait_for(
        lambda: listing.row(conv.id) is not None and "Hallo" in listing.row(conv.id).preview,
        what="bob's chat with the last message previewed",
    )
    await driver.settle(0.5)
    row = listing.row(conv.id)
    preview = next(w for w in row.walk() if getattr(w, "text", None) == row.preview)
    assert preview.text_layout is not None
    assert_no_tofu(preview)
    assert len(colourful_columns(image_of(preview))) > 20, "flag and family drawn in colour"
    shots(driver, "chat-list")

    await driver.tap(row)
    await driver.wait_for(lambda: driver.current == "chat", what="the chat")
    for text in MESSAGES:
        await driver.wait_for(lambda t=text: rows_with(driver, t), what=f"the bubble {text!r}")
    await driver.wait_for(
        lambda: rows_with(driver, CHINESE)[0].message.reactions, what="the reaction"
    )
    await driver.settle(0.5)
    shots(driver, "bubbles")

    for text in MESSAGES:
        assert_no_tofu(rows_with(driver, text)[0].body)

    # emoji bring colour: the family and the flag (black, red, gold) are pictures
    emoji_image = image_of(rows_with(driver, EMOJI)[0].body)
    assert len(colourful_columns(emoji_image)) > 40
    colours = set(emoji_image.getdata())
    assert any(r > 180 and g < 60 and b < 60 and a > 200 for r, g, b, a in colours), "red"
    assert any(r > 200 and g > 150 and b < 60 and a > 200 for r, g, b, a in colours), "gold"
    runs = [r for ln in rows_with(driver, EMOJI)[0].body.text_layout.lines for r in ln.runs]
    assert {r.emoji for r in runs if r.emoji} >= {"1f469-200d-1f469-200d-1f467-200d-1f466"}
    assert "1f1e9-1f1ea" in {r.emoji for r in runs}

    # the reaction chip under the Chinese bubble shows the emoji in colour
    chinese_row = rows_with(driver, CHINESE)[0]
    chips = [w for w in chinese_row.walk() if type(w).__name__ == "Chip"]
    assert chips and "\U0001f389" in chips[0].text
    assert colourful_columns(image_of(chips[0])), "the reaction emoji is in colour"

    # Arabic is shaped: the joined word is not as wide as its letters drawn apart
    style = Style(int(float(rows_with(driver, ARABIC)[0].body.font_size)))
    word = "مرحبا"
    joined = layout(word, style).width
    apart = sum(layout(letter, style).width for letter in word)
    assert abs(joined - apart) > 2, (joined, apart)
    assert width_of([], style) == 0

    # right to left: the first logical character (an emoji) is drawn at the right end, the
    # last one (another emoji) at the left, the Hebrew between them
    hebrew = image_of(rows_with(driver, HEBREW)[0].body)
    colour = colourful_columns(hebrew)
    size = style.emoji_size
    assert colour and min(colour) < size and max(colour) > hebrew.width - size
    assert not [x for x in colour if size + 2 < x < hebrew.width - size - 2]

    # a wrapped right-to-left paragraph is aligned right: every line ends at the right edge
    long_label = rows_with(driver, LONG_ARABIC)[0].body
    assert len(long_label.text_layout.lines) >= 2
    long_image = image_of(long_label)
    top = 0
    lefts = []
    for line in long_label.text_layout.lines:
        band = long_image.crop((0, top, long_image.width, top + line.ascent + line.descent))
        ink = ink_columns(band)
        assert ink and ink[-1] >= long_image.width - 4, "the line reaches the right edge"
        lefts.append(ink[0])
        top += line.ascent + line.descent
    assert max(lefts) > min(lefts) + 10, "shorter lines are ragged on the left"
