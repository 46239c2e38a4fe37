"""Paging up through history, and search that opens a chat at the hit."""

from __future__ import annotations

import pytest
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.bubbles import MessageRow
from tidings.app.harness import AppDriver
from tidings.app.screens.chat import PAGE_SIZE
from tidings.app.screens.search import SearchResult
from tidings.client import Client

pytestmark = pytest.mark.ui


async def send_many(sender: Client, conv_id: str, bodies: list[str]) -> None:
    for body in bodies:
        await sender.send_text(conv_id, body)


async def open_chat_from_list(driver: AppDriver, conv_id: str, last_body: str) -> None:
    listing = chat_list(driver)
    await driver.wait_for(
        lambda: listing.row(conv_id) is not None and last_body in listing.row(conv_id).preview,
        within=30,
        what="the newest message in the chat list",
    )
    row = listing.row(conv_id)
    assert row is not None
    await driver.tap(row)
    await driver.wait_for(lambda: rows_with(driver, last_body), what="the newest bubble")


async def test_scrolling_up_loads_older_pages(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    total = PAGE_SIZE * 2 + 25
    bodies = [f"Message number {i}" for i in range(1, total + 1)]
    await send_many(bob, conv.id, bodies)
    await open_chat_from_list(driver, conv.id, bodies[-1])

    chat = chat_screen(driver)
    assert len(driver.find(MessageRow)) == PAGE_SIZE
    assert not rows_with(driver, bodies[0])
    assert chat.before is not None
    assert chat.ids.scroller.scroll_y == pytest.approx(0, abs=0.01)  # opened at the bottom

    pages = 1
    while not rows_with(driver, bodies[0]):
        shown = len(driver.find(MessageRow))
        top_before = chat.messages[0].body
        await driver.scroll_to_top(chat.ids.scroller)
        await driver.wait_for(
            lambda shown=shown: len(driver.find(MessageRow)) > shown, what="an older page"
        )
        pages += 1
        # the place is kept: the old top message is still on screen, not jumped away from
        assert chat.ids.scroller.scroll_y < 0.97
        assert rows_with(driver, top_before)
        await driver.frames(3)
    assert pages == 3
    assert len(driver.find(MessageRow)) == total
    assert chat.before is None
    chat.ids.scroller.scroll_y = 1.0
    await driver.settle(0.3)
    shots(driver, "top-of-history")


async def test_search_finds_a_message_and_opens_it_in_its_chat(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    bodies = [f"Filler line {i}" for i in range(1, 71)]
    bodies[4] = "Let us meet at the zebra crossing by the old mill"
    await send_many(bob, conv.id, bodies)
    listing = chat_list(driver)
    await driver.wait_for(
        lambda: (
            listing.row(conv.id) is not None and "Filler line 70" in listing.row(conv.id).preview
        ),
        within=30,
        what="all messages received",
    )

    await driver.tap(listing.ids.search)
    await driver.wait_for(lambda: driver.current == "search", what="the search screen")
    search = driver.app.screen("search")
    search.ids.query.focus = True
    await driver.type_text("zebra")
    await driver.wait_for(lambda: driver.find(SearchResult), what="a search result")
    results = driver.find(SearchResult)
    assert len(results) == 1
    assert "zebra" in results[0].snippet
    assert results[0].title == "bob"
    shots(driver, "results")

    await driver.tap(results[0])
    await driver.wait_for(lambda: driver.current == "chat", what="the chat")
    await driver.wait_for(lambda: rows_with(driver, bodies[4]), what="the hit in its chat")
    chat = chat_screen(driver)
    assert chat.conv_id == conv.id
    hit_row = rows_with(driver, bodies[4])[0]
    assert hit_row.bubble.highlighted
    assert not rows_with(driver, bodies[-1])  # opened around the hit, not at the end
    assert chat.show_jump
    await driver.settle(0.2)
    shots(driver, "opened-at-hit")

    await driver.tap(chat.ids.jump)
    await driver.wait_for(lambda: rows_with(driver, bodies[-1]), what="the latest messages")
    assert chat.at_latest
