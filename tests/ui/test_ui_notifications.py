"""Notifications in the app: a chat's level and mute stored on the server, the muted marks,
mention autocomplete and highlighting, local notifications while the window is not in front,
and the push section of the settings."""

from __future__ import annotations

import time

import pytest
from kivy.core.window import Window
from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.harness import AppDriver
from tidings.app.mentions import MentionRow, mention_boxes
from tidings.app.screens.group_info import GroupInfoScreen
from tidings.app.screens.notifications import NotificationsScreen, PushSection
from tidings.client import Client
from tidings.protocol.push import MUTED_FOREVER

pytestmark = pytest.mark.ui

HOUR_MS = 3600_000


def notifications_screen(driver: AppDriver) -> NotificationsScreen:
    screen = driver.app.screen("notifications")
    assert isinstance(screen, NotificationsScreen)
    return screen


async def open_chat_with(driver: AppDriver, conv_id: str) -> None:
    await driver.wait_for(lambda: chat_list(driver).row(conv_id), what="the chat in the list")
    row = chat_list(driver).row(conv_id)
    assert row is not None
    await driver.tap(row)
    chat = chat_screen(driver)
    await driver.wait_for(
        lambda: driver.current == "chat" and chat.conversation is not None, what="the chat"
    )


def pixel(x: float, y: float) -> tuple[int, int, int]:
    data = bytes(glReadPixels(int(x), int(y), 1, 1, GL_RGBA, GL_UNSIGNED_BYTE))
    return data[0], data[1], data[2]


async def test_level_and_mute_from_the_chat_header_are_stored(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    client = driver.app.require_client()
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "hello alice")
    await open_chat_with(driver, conv.id)
    chat = chat_screen(driver)
    assert not chat.muted

    await driver.tap(chat.ids.notifications)
    await driver.wait_for(lambda: driver.current == "notifications", what="notifications")
    screen = notifications_screen(driver)
    assert screen.conv_id == conv.id
    assert screen.state == "Notifying for all messages"
    assert screen.level_rows["all"].chosen

    await driver.tap(screen.level_rows["mentions"])
    await driver.wait_for(lambda: screen.level == "mentions", what="mentions only")
    await client.refresh_all()  # what the server has replaces the local copy
    assert client.notifications(conv.id).level == "mentions"
    assert client.notifications(conv.id).muted_until is None

    before = int(time.time() * 1000)
    await driver.tap(screen.ids.mute_8h)
    await driver.wait_for(lambda: screen.muted, what="muted for 8 hours")
    await client.refresh_all()
    setting = client.notifications(conv.id)
    assert setting.level == "mentions"  # muting keeps the level
    assert setting.muted_until is not None
    assert before + 8 * HOUR_MS - 60_000 <= setting.muted_until <= before + 8 * HOUR_MS + 60_000
    assert screen.state.startswith("Muted until ")
    assert screen.state.endswith("then mentions only")
    shots(driver, "muted-8h")

    await driver.tap(screen.ids.mute_always)
    await driver.wait_for(lambda: "until you unmute" in screen.state, what="muted always")
    await client.refresh_all()
    assert client.notifications(conv.id).muted_until == MUTED_FOREVER

    await driver.tap(screen.ids.back)
    await driver.wait_for(lambda: driver.current == "chat", what="back to the chat")
    assert chat.muted  # the header's bell is struck through
    await driver.transitions_done()
    shots(driver, "chat-header-muted")
    await driver.tap(chat.ids.back)
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    row = chat_list(driver).row(conv.id)
    assert row is not None
    await driver.wait_for(lambda: row.muted, what="the muted mark in the list")
    await driver.transitions_done()
    shots(driver, "chat-list-muted")

    await open_chat_with(driver, conv.id)
    await driver.tap(chat.ids.notifications)
    await driver.wait_for(lambda: driver.current == "notifications", what="notifications")
    await driver.tap(screen.ids.unmute)
    await driver.wait_for(lambda: not screen.muted, what="unmuted")
    await client.refresh_all()
    assert client.notifications(conv.id).muted_until is None
    assert client.notifications(conv.id).level == "mentions"
    await driver.tap(screen.level_rows["none"])
    await driver.wait_for(lambda: screen.level == "none", what="nothing")
    await client.refresh_all()
    assert client.notifications(conv.id).level == "none"


async def test_group_info_leads_to_the_groups_notifications(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    await peer("carol")
    driver = await app("alice")
    group = await bob.create_group("Crew", ["alice", "carol"])
    await open_chat_with(driver, group.id)
    chat = chat_screen(driver)
    await driver.tap(chat.ids.header)
    await driver.wait_for(lambda: driver.current == "group_info", what="group info")
    info = driver.app.screen("group_info")
    assert isinstance(info, GroupInfoScreen)
    await driver.tap(info.ids.notifications)
    await driver.wait_for(lambda: driver.current == "notifications", what="notifications")
    screen = notifications_screen(driver)
    assert screen.conv_id == group.id and screen.title == "Crew"
    await driver.tap(screen.ids.mute_1h)
    await driver.wait_for(lambda: screen.muted, what="muted for an hour")
    shots(driver, "group-muted")
    client = driver.app.require_client()
    await client.refresh_all()
    until = client.notifications(group.id).muted_until
    assert until is not None and abs(until - time.time() * 1000 - HOUR_MS) < 60_000


async def test_mention_autocomplete_inserts_the_username_and_mentions_are_highlighted(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    await peer("carol")
    driver = await app("alice")
    group = await bob.create_group("Crew", ["alice", "carol"])
    await open_chat_with(driver, group.id)
    chat = chat_screen(driver)
    chat.ids.composer.focus = True
    await driver.type_text("thanks @b")
    await driver.wait_for(lambda: driver.find(MentionRow), what="the suggestions")
    assert [r.username for r in driver.find(MentionRow)] == ["bob"]  # not me, not carol
    await driver.type_text("o")
    shots(driver, "autocomplete")
    await driver.tap(driver.find(MentionRow)[0])
    assert chat.ids.composer.text == "thanks @bob "
    assert not driver.find(MentionRow)
    await driver.type_text("see you")
    await driver.press_enter()

    async def bob_is_mentioned() -> bool:
        page = await bob.history(group.id)
        return any(m.body == "thanks @bob see you" and m.mentions_me for m in page.messages)

    await driver.wait_until(bob_is_mentioned, what="bob's copy mentions him")

    await bob.send_text(group.id, "@alice can you bring the maps?")
    await bob.send_text(group.id, "and snacks for everyone")
    await driver.wait_for(lambda: rows_with(driver, "and snacks for everyone"), what="bubbles")
    mentioned = rows_with(driver, "@alice can you bring the maps?")[0]
    plain = rows_with(driver, "and snacks for everyone")[0]
    assert mentioned.message.mentions_me and not plain.message.mentions_me
    assert mentioned.meta.text.startswith("[b]@[/b]")
    assert not plain.meta.text.startswith("[b]@")
    boxes = mention_boxes(mentioned.body, {"alice"})
    assert len(boxes) == 1
    await driver.settle(0.3)
    shots(driver, "mention-highlight")

    # the pill behind "@alice" is tinted with the accent colour; plain text sits on white
    x, y, _w, h = boxes[0]
    label = mentioned.body
    wx, wy = label.to_window(label.x + x - 1, label.y + y + h / 2)
    r, g, b = pixel(wx, wy)
    assert b > r + 20, (r, g, b)
    px, py = plain.body.to_window(plain.body.x - 1, plain.body.center_y)
    assert pixel(px, py) == (255, 255, 255)
    bx, by = mentioned.bubble.to_window(mentioned.bubble.x, mentioned.bubble.center_y)
    r, g, b = pixel(bx, by)
    assert b > r + 40, (r, g, b)  # the outline of a bubble that mentions me


async def test_a_notify_while_the_window_is_not_in_front_reaches_the_notifier(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob: Client = await peer("bob")
    driver = await app("alice")
    shown: list[tuple[str, str]] = []
    driver.app.local_notifier.sink = lambda title, message: shown.append((title, message))
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "while you look")
    await driver.wait_for(
        lambda: (row := chat_list(driver).row(conv.id)) is not None and row.unread == 1,
        what="the first message",
    )
    await driver.settle(0.3)
    assert shown == []  # the window is in front: no notification

    Window._focus = False
    try:
        await bob.send_text(conv.id, "lunch at noon?   we could try the new place " + "x" * 80)
        await driver.wait_for(lambda: shown, what="the notification")
    finally:
        Window._focus = True
    title, message = shown[0]
    assert title == "bob"
    assert message.startswith("lunch at noon? we could try the new place x")
    assert message.endswith("\u2026") and len(message) == 80
    shots(driver, "after-notify")


async def test_settings_show_the_push_registration_and_clear_it(
    app: AppFactory, shots: Shots
) -> None:
    driver = await app("alice")
    client = driver.app.require_client()
    await client.register_push("log", "alice-device-token")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    await driver.tap(chat_list(driver).ids.settings)
    await driver.wait_for(lambda: driver.current == "settings", what="settings")
    section = driver.find(PushSection)[0]
    await driver.wait_for(lambda: section.registered, what="the registration")
    await driver.transitions_done()
    assert section.status == "This device is registered for push (log)"
    shots(driver, "registered")

    await driver.tap(section.ids.clear_push)
    await driver.wait_for(lambda: not section.registered, what="cleared")
    assert await client.push_registration() is None
    assert section.status == "Push is not used on this computer"
    assert "connection open" in section.detail
    shots(driver, "cleared")
