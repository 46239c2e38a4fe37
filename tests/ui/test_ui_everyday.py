"""Everyday features through the real widgets: Note to Self, edit and delete from the message
menu, reactions through the emoji picker, the unread separator and its jump button, message
info, the device list, the link code as a QR code, two panes on a wide window and times in the
user's locale."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from kivy.core.window import Window
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app import timefmt
from tidings.app.emoji_picker import EmojiPicker, catalogue, search
from tidings.app.harness import AppDriver
from tidings.app.message_menu import ChoiceSheet, EditHistorySheet, MessageActions
from tidings.app.screens.devices import DevicesScreen
from tidings.app.screens.link import ApproveDeviceScreen, LinkThisDeviceScreen
from tidings.app.screens.message_info import MessageInfoScreen
from tidings.app.unread import UnreadSeparator
from tidings.client import Client
from tidings.client.graphemes import is_emoji
from tidings.client.types import MessageStatus

pytestmark = pytest.mark.ui


def overlay(driver: AppDriver, kind: type[Any]) -> Any:
    sheets = [w for w in driver.app.root_window.children if isinstance(w, kind)]
    assert sheets, f"no {kind.__name__} is open"
    return sheets[0]


async def menu_of(driver: AppDriver, body: str) -> MessageActions:
    """Long-press the bubble until its menu opens; the menu once it takes taps."""
    await driver.wait_for(lambda: driver.overlay(MessageActions) is None, what="menus closed")
    await driver.long_press(
        rows_with(driver, body)[0].bubble, until=lambda: driver.overlay(MessageActions)
    )
    sheet: MessageActions = await driver.opened(MessageActions)
    return sheet


async def open_chat_with(driver: AppDriver, conv_id: str) -> None:
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv_id) is not None, what="the chat in the list")
    await driver.tap(listing.row(conv_id))
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.conv_id == conv_id and chat.conversation, what="the chat")


async def test_note_to_self_from_new_chat_pinned_in_the_list(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Newer than your notes")
    await driver.tap(chat_list(driver).ids.compose)
    new_chat = driver.app.screen("new_chat")
    await driver.tap(new_chat.ids.note_to_self)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: driver.current == "chat" and chat.conversation, what="notes")
    assert chat.conversation is not None and chat.conversation.note_to_self
    assert chat.title == "Note to Self"
    assert chat.peer() is None
    chat.ids.composer.focus = True
    await driver.type_text("Buy oat milk \U0001f95b")
    await driver.press_enter()
    await driver.wait_for(lambda: rows_with(driver, "Buy oat milk \U0001f95b"), what="the note")
    await driver.wait_for(
        lambda: rows_with(driver, "Buy oat milk \U0001f95b")[0].message.seq is not None,
        what="the note sent",
    )
    shots(driver, "note")

    await bob.send_text(conv.id, "Even newer")
    driver.app.home()
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id) is not None, what="bob's chat")
    await driver.wait_for(lambda: "Even newer" in listing.row(conv.id).preview, what="preview")
    rows = list(reversed(listing.ids.rows.children))
    assert rows[0].conv_id == chat.conv_id, "Note to Self is pinned above newer chats"
    assert rows[0].note and rows[0].title == "Note to Self"
    shots(driver, "list")


async def test_edit_delete_history_and_info_from_the_message_menu(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    from_bob = await bob.send_text(conv.id, "Lunch at noon?")
    await open_chat_with(driver, conv.id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: rows_with(driver, "Lunch at noon?"), what="bob's message")

    chat.ids.composer.focus = True
    await driver.type_text("Sure, see you tehre")
    await driver.press_enter()
    typo = "Sure, see you tehre"
    await driver.wait_for(
        lambda: (
            rows_with(driver, typo)
            and rows_with(driver, typo)[0].message.status is not MessageStatus.SENDING
        ),
        what="sent",
    )
    sent_id = rows_with(driver, typo)[0].message.id

    sheet = await menu_of(driver, typo)
    labels = [c.text for c in reversed(sheet.ids.actions.children)]
    assert labels == ["Reply", "Edit", "Copy text", "Info", "Delete"]
    assert len(sheet.ids.reactions.children) == 7  # the quick six and the picker
    shots(driver, "menu")
    await driver.tap(sheet.action("Edit"))
    await driver.wait_for(lambda: chat.editing, what="editing")
    assert chat.ids.composer.text == typo
    shots(driver, "editing")
    chat.ids.composer.text = ""
    await driver.type_text("Sure, see you there")
    await driver.press_enter()
    fixed = "Sure, see you there"
    await driver.wait_for(lambda: rows_with(driver, fixed), what="the edited bubble")
    row = rows_with(driver, fixed)[0]
    assert row.message.id == sent_id and row.message.edited
    assert "edited" in row.meta.text
    assert not chat.editing and chat.ids.composer.text == ""

    async def bob_sees_edit() -> bool:
        mine = await bob.message(sent_id)
        return mine is not None and mine.body == fixed and mine.edited

    await driver.wait_until(bob_sees_edit, what="bob sees the edit")
    shots(driver, "edited")

    sheet = await menu_of(driver, fixed)
    await driver.tap(sheet.action("Edit history"))
    await driver.wait_for(
        lambda: [w for w in Window.children if isinstance(w, EditHistorySheet)], what="history"
    )
    history = overlay(driver, EditHistorySheet)
    texts = [getattr(w, "text", "") for w in history.ids.box.children]
    assert typo in texts and fixed in texts
    shots(driver, "edit-history")
    history.dismiss()
    await driver.wait_for(lambda: driver.overlay(EditHistorySheet) is None, what="history shut")

    await bob.mark_read(conv.id)
    await driver.wait_for(
        lambda: rows_with(driver, fixed)[0].message.status is MessageStatus.READ, what="read"
    )
    sheet = await menu_of(driver, fixed)
    await driver.tap(sheet.action("Info"))
    info = driver.app.screen("message_info")
    assert isinstance(info, MessageInfoScreen)
    await driver.wait_for(lambda: info.row("bob") is not None, what="bob's receipt")
    assert driver.current == "message_info"
    bob_row = info.row("bob")
    assert bob_row is not None and bob_row.state.startswith("Read")
    shots(driver, "info")
    await driver.tap(info.ids.back)
    await driver.wait_for(lambda: driver.current == "chat", what="back in the chat")

    # delete for everyone: a line stays here and at bob's
    sheet = await menu_of(driver, fixed)
    await driver.tap(sheet.action("Delete"))
    confirm = await driver.opened(ChoiceSheet)
    await driver.tap(confirm.choice("Delete for everyone"))
    await driver.wait_for(lambda: chat.row_for(sent_id).message.deleted, what="deleted")
    assert chat.row_for(sent_id).body.text == "This message was deleted"

    async def bob_sees_deleted() -> bool:
        mine = await bob.message(sent_id)
        return mine is not None and mine.deleted

    await driver.wait_until(bob_sees_deleted, what="deleted at bob's")
    shots(driver, "deleted-for-everyone")

    # delete for me: bob's message goes from this device only
    sheet = await menu_of(driver, "Lunch at noon?")
    assert "Edit" not in [c.text for c in sheet.ids.actions.children]
    await driver.tap(sheet.action("Delete"))
    confirm = await driver.opened(ChoiceSheet)
    with pytest.raises(LookupError):
        confirm.choice("Delete for everyone")
    await driver.tap(confirm.choice("Delete for me"))
    await driver.wait_for(lambda: not rows_with(driver, "Lunch at noon?"), what="row removed")
    assert await driver.app.require_client().message(from_bob.id) is None
    assert (await bob.message(from_bob.id)) is not None
    shots(driver, "deleted-for-me")


async def test_reaction_through_the_emoji_picker(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    every = catalogue()
    assert len(every) > 1500 and all(is_emoji(e.text) for e in every)
    assert {e.category for e in every} >= {"Smileys & people", "Flags", "Food & drink"}
    assert search("flag germany")[0].text == "\U0001f1e9\U0001f1ea"

    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    sent = await bob.send_text(conv.id, "We won the match!")
    await open_chat_with(driver, conv.id)
    await driver.wait_for(lambda: rows_with(driver, "We won the match!"), what="the message")
    sheet = await menu_of(driver, "We won the match!")
    await driver.tap(sheet.more)
    picker = overlay(driver, EmojiPicker)
    await driver.frames(3)
    assert picker.cells(), "the first category is shown"
    shots(driver, "picker")
    await driver.tap(picker.tabs["Food & drink"])
    assert all(c.emoji.category == "Food & drink" for c in picker.cells())
    picker.ids.query.text = "trophy"
    await driver.frames(3)
    cells = picker.cells()
    assert [c.emoji.text for c in cells] == ["\U0001f3c6"]
    shots(driver, "picker-search")
    await driver.tap(cells[0])
    await driver.wait_for(
        lambda: rows_with(driver, "We won the match!")[0].message.reactions, what="reaction"
    )
    assert rows_with(driver, "We won the match!")[0].message.reactions[0][0] == "\U0001f3c6"

    async def bob_sees() -> bool:
        mine = await bob.message(sent.id)
        return mine is not None and bool(mine.reactions)

    await driver.wait_until(bob_sees, what="bob sees the reaction")
    shots(driver, "reacted")


async def test_unread_separator_and_jump_to_first_unread(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Read before")
    await open_chat_with(driver, conv.id)
    await driver.wait_for(lambda: rows_with(driver, "Read before"), what="the first message")

    async def read_by_alice() -> bool:
        marker = await driver.app.require_client().unread_marker(conv.id)
        return marker.count == 0

    await driver.wait_until(read_by_alice, what="alice read it")
    driver.app.home()
    for n in range(1, 46):
        await bob.send_text(conv.id, f"Unread number {n}")
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id).unread == 45, what="45 unread")

    await open_chat_with(driver, conv.id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: rows_with(driver, "Unread number 45"), what="the latest")
    # 45 unread, 40 on the first page: the first unread is further up
    await driver.wait_for(lambda: chat.unread.button.shown, what="the jump button")
    assert chat.unread.button.text.endswith("45 unread messages")
    shots(driver, "jump-button")
    await driver.tap(chat.unread.button)
    await driver.wait_for(lambda: rows_with(driver, "Unread number 1"), what="first unread")
    separators = driver.find(UnreadSeparator)
    assert len(separators) == 1 and separators[0].text == "45 unread messages"
    feed = list(reversed(chat.ids.feed.children))
    index = feed.index(separators[0])
    assert feed[index + 1] is rows_with(driver, "Unread number 1")[0]
    await driver.settle(0.4)
    assert chat.unread._separator_visible()
    assert not chat.unread.button.shown
    shots(driver, "separator")


async def test_devices_listed_and_removed_after_confirmation(
    app: AppFactory, server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    alice = driver.app.require_client()
    codes: asyncio.Queue[str] = asyncio.Queue()
    waiting = asyncio.create_task(
        Client.link_device(tmp_path / "laptop", server.url, "laptop", on_code=codes.put_nowait)
    )
    await alice.approve_device(await asyncio.wait_for(codes.get(), 20), "laptop")
    laptop = await asyncio.wait_for(waiting, 30)
    try:
        await driver.tap(chat_list(driver).ids.settings)
        settings = driver.app.screen("settings")
        await driver.tap(settings.ids.devices)
        screen = driver.app.screen("devices")
        assert isinstance(screen, DevicesScreen)
        assert driver.current == "devices"
        await driver.wait_for(lambda: screen.row("laptop") is not None, what="the laptop")
        own = [r for r in screen.ids.devices.children if r.current]
        assert len(own) == 1 and "this device" in own[0].detail
        await driver.transitions_done()
        shots(driver, "devices")
        row = screen.row("laptop")
        assert row is not None
        await driver.tap(row.ids.remove_button)
        confirm = await driver.opened(ChoiceSheet)
        shots(driver, "confirm-remove")
        await driver.tap(confirm.choice("Remove device"))
        await driver.wait_for(lambda: screen.row("laptop") is None, what="the laptop removed")
        shots(driver, "removed")
    finally:
        await laptop.close()


async def test_link_code_shown_as_a_qr_code(
    app: AppFactory, server: ServerProcess, shots: Shots
) -> None:
    driver = await app()
    await driver.wait_for(lambda: driver.current == "onboarding", what="onboarding")
    onboarding = driver.app.screen("onboarding")
    await driver.wait_for(lambda: onboarding.ids.server.text, what="server prefilled")
    await driver.tap(onboarding.ids.link)
    link = driver.app.screen("link_this_device")
    assert isinstance(link, LinkThisDeviceScreen)
    link.ids.device.text = "tablet"
    await driver.tap(link.ids.start)
    await driver.wait_for(lambda: link.code, what="a link code")
    await driver.frames(3)
    assert link.qr is not None and link.ids.qr.texture is link.qr
    assert link.ids.qr.width > 150 and link.qr.width >= 21
    assert link.ids.code_text.text == link.code  # the text stays, as a fallback
    shots(driver, "qr")
    await driver.tap(link.ids.start)  # cancel
    assert link.qr is None
    approve = driver.app.screen("approve_device")
    assert isinstance(approve, ApproveDeviceScreen)
    assert not approve.can_scan  # no camera here: the code is typed or pasted


async def test_two_panes_when_wide_and_one_when_narrow(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    Window.size = (1280, 800)
    layout = driver.app.layout
    await driver.wait_for(lambda: layout.wide, what="two panes")
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Side by side \U0001f5a5\ufe0f")
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id) is not None, what="bob's chat")
    assert driver.current == "no_chat"
    shots(driver, "wide-empty")
    await driver.tap(listing.row(conv.id))
    await driver.wait_for(lambda: rows_with(driver, "Side by side \U0001f5a5\ufe0f"), what="chat")
    chat = chat_screen(driver)
    list_x = listing.to_window(0, 0)[0]  # screens are relative layouts: their origin
    chat_x = chat.to_window(0, 0)[0]
    assert list_x == 0 and chat_x >= listing.width  # side by side
    assert listing.get_root_window() is not None and driver.current == "chat"
    shots(driver, "wide-chat")

    Window.size = (400, 800)
    await driver.wait_for(lambda: not layout.wide, what="one pane")
    await driver.settle(0.3)
    assert driver.current == "chat" and listing.parent is None
    shots(driver, "narrow-chat")
    driver.app.back()
    await driver.wait_for(lambda: driver.current == "chat_list", what="the list alone")
    shots(driver, "narrow-list")
    Window.size = (1280, 800)
    await driver.wait_for(lambda: layout.wide, what="two panes again")
    assert driver.current == "no_chat" and listing.get_root_window() is not None
    Window.size = (390, 844)  # as the next test expects it, while this app still runs
    await driver.settle(0.5)


@pytest.mark.parametrize(
    ("locale", "expected", "day"),
    [("en_US", "3:05 PM", "Monday, November 2"), ("de_DE", "15:05", "Montag, 2. November")],
)
async def test_times_in_the_users_locale(
    app: AppFactory, peer: PeerFactory, shots: Shots, locale: str, expected: str, day: str
) -> None:
    moment = dt.datetime(2026, 11, 24, 15, 5).astimezone()
    timefmt.set_locale(locale)
    try:
        assert timefmt.clock(int(moment.timestamp() * 1000)) == expected
        assert timefmt.day_label(dt.date(2026, 11, 2), moment) == day
        bob = await peer("bob")
        driver = await app("alice")
        conv = await bob.open_direct("alice")
        sent = await bob.send_text(conv.id, "What time is it?")
        await open_chat_with(driver, conv.id)
        await driver.wait_for(lambda: rows_with(driver, "What time is it?"), what="message")
        meta = rows_with(driver, "What time is it?")[0].meta.text
        assert timefmt.clock(sent.created_at) in meta
        twelve_hours = re.search(r"\d{1,2}:\d\d [AP]M", meta) is not None
        assert twelve_hours == (locale == "en_US")
        shots(driver, "chat")
    finally:
        timefmt.set_locale(None)
