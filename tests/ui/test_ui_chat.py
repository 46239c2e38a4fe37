"""Sending, receiving, ticks, replies and reactions through the real widgets."""

from __future__ import annotations

import pytest
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.screens.chat import MessageActions
from tidings.app.theme import TICK_DOUBLE
from tidings.client.types import MessageStatus

pytestmark = pytest.mark.ui


async def test_type_and_send_then_delivered_and_read(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app()
    await driver.wait_for(lambda: driver.current == "onboarding", what="onboarding")
    onboarding = driver.app.screen("onboarding")
    await driver.wait_for(lambda: onboarding.ids.server.text, what="server prefilled")
    onboarding.ids.username.focus = True
    await driver.type_text("alice")
    await driver.tap(onboarding.ids.create)
    # the display name step after the account is made: skipped
    await driver.wait_for(lambda: driver.current == "profile", what="the display name step")
    await driver.tap(driver.app.screen("profile").ids.skip)
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")

    await driver.tap(chat_list(driver).ids.compose)
    new_chat = driver.app.screen("new_chat")
    new_chat.ids.username.focus = True
    await driver.type_text("bob")
    await driver.tap(new_chat.ids.start)
    await driver.wait_for(lambda: driver.current == "chat", what="the chat with bob")
    chat = chat_screen(driver)
    assert chat.title == "bob"

    chat.ids.composer.focus = True
    await driver.type_text("Hello Bob\nsecond line")
    await driver.press_enter()
    body = "Hello Bob\nsecond line"
    await driver.wait_for(lambda: rows_with(driver, body), what="the bubble")
    assert chat.ids.composer.text == ""
    row = rows_with(driver, body)[0]
    assert row.own
    assert row.body.text == "Hello Bob\nsecond line"

    await driver.wait_for(
        lambda: rows_with(driver, body)[0].message.status is MessageStatus.DELIVERED,
        what="delivered",
    )
    row = rows_with(driver, body)[0]
    assert TICK_DOUBLE in row.meta.text
    delivered_meta = row.meta.text
    shots(driver, "delivered")

    conv_id = chat.conv_id
    await bob.mark_read(conv_id)
    await driver.wait_for(
        lambda: rows_with(driver, body)[0].message.status is MessageStatus.READ, what="read"
    )
    row = rows_with(driver, body)[0]
    assert TICK_DOUBLE in row.meta.text
    assert row.meta.text != delivered_meta  # read ticks are coloured differently
    shots(driver, "read")


async def test_incoming_message_in_list_and_open_chat(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Are you there?")

    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id) is not None, what="bob's chat in the list")
    await driver.wait_for(lambda: listing.row(conv.id).unread == 1, what="one unread")
    row = listing.row(conv.id)
    assert row is not None
    assert row.title == "bob"
    assert "Are you there?" in row.preview
    shots(driver, "list")

    await driver.tap(row)
    await driver.wait_for(lambda: driver.current == "chat", what="the chat")
    await driver.wait_for(lambda: rows_with(driver, "Are you there?"), what="the first message")
    sent = await bob.send_text(conv.id, "Second message, live")
    await driver.wait_for(lambda: rows_with(driver, "Second message, live"), what="live message")
    assert not rows_with(driver, "Second message, live")[0].own

    # the open chat marks what it shows as read: bob's message turns read on his side
    async def bob_sees_read() -> bool:
        mine = await bob.message(sent.id)
        return mine is not None and mine.status is MessageStatus.READ

    await driver.wait_until(bob_sees_read, what="bob sees his message read")
    shots(driver, "chat")

    # a reply through the long-press sheet, and a quick reaction
    target = rows_with(driver, "Second message, live")[0]
    await driver.long_press(target.bubble)
    sheets = [w for w in driver.app.root_window.children if isinstance(w, MessageActions)]
    assert sheets, "a long press opens the message actions"
    sheet = sheets[0]
    await driver.tap(sheet.ids.actions.children[-1])  # "Reply" comes first
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.reply_text, what="the quote above the composer")
    assert chat.reply_name == "bob"
    chat.ids.composer.focus = True
    await driver.type_text("Yes, here")
    await driver.tap(chat.ids.send)
    await driver.wait_for(lambda: rows_with(driver, "Yes, here"), what="the reply")
    reply_row = rows_with(driver, "Yes, here")[0]
    assert reply_row.message.reply_to == sent.id
    assert chat.reply_text == ""
    # a tapped quote flashes the quoted message (tap once the bubble stops changing status)
    await driver.wait_for(
        lambda: rows_with(driver, "Yes, here")[0].message.status is MessageStatus.DELIVERED,
        what="the reply delivered",
    )
    await driver.settle(0.3)
    quote = rows_with(driver, "Yes, here")[0].quote
    assert quote is not None
    await driver.tap(quote)
    await driver.wait_for(
        lambda: rows_with(driver, "Second message, live")[0].bubble.highlighted,
        what="the quoted message highlighted",
    )

    await driver.long_press(rows_with(driver, "Second message, live")[0].bubble)
    sheet = next(w for w in driver.app.root_window.children if isinstance(w, MessageActions))
    await driver.tap(sheet.ids.reactions.children[-1])  # the first quick reaction
    await driver.wait_for(
        lambda: rows_with(driver, "Second message, live")[0].message.reactions,
        what="the reaction",
    )
    shots(driver, "reply-and-reaction")


async def test_failed_message_is_retried_by_a_tap(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    carol = await peer("carol")
    driver = await app("alice")
    group = await carol.create_group("Quiet room", ["alice"])
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(group.id) is not None, what="the group in the list")
    driver.app.open_chat(group.id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.conversation is not None, what="the group opened")

    await carol.remove_member(group.id, "alice")
    await driver.wait_for(lambda: not chat.member, what="the app to see alice removed")
    assert chat.ids.composer_bar.parent is None  # no composer for a non-member
    # the server refuses what alice sends now: the message fails for good
    client = driver.app.require_client()
    refused = await client.send_text(group.id, "Anyone here?")
    await driver.wait_for(
        lambda: (
            rows_with(driver, "Anyone here?")
            and rows_with(driver, "Anyone here?")[0].message.status is MessageStatus.FAILED
        ),
        what="the failed status",
    )
    row = rows_with(driver, "Anyone here?")[0]
    assert "tap to retry" in row.meta.text
    shots(driver, "failed")

    await carol.add_members(group.id, ["alice"])
    await driver.wait_for(lambda: chat.member, what="alice back in the group")
    await driver.tap(rows_with(driver, "Anyone here?")[0].bubble)
    await driver.wait_for(
        lambda: (
            rows_with(driver, "Anyone here?")[0].message.status
            in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
        ),
        what="the retried message accepted",
    )
    assert rows_with(driver, "Anyone here?")[0].message.id == refused.id
    shots(driver, "retried")
