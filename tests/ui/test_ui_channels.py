"""Channels through the real widgets: an admin creates one and posts; a subscriber joins by
handle, reads without a composer, sees the megaphone and the count, and channel info."""

from __future__ import annotations

import dataclasses

import pytest
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.channels import ChannelBar, MegaphoneMark, UnverifiedNote
from tidings.app.screens.channel_info import ChannelInfoScreen, ChannelPersonRow
from tidings.client.types import MessageStatus

pytestmark = pytest.mark.ui


def _info(driver: object) -> ChannelInfoScreen:
    screen = driver.app.screen("channel_info")  # type: ignore[attr-defined]
    assert isinstance(screen, ChannelInfoScreen)
    return screen


async def test_admin_creates_a_channel_and_posts(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")

    await driver.tap(chat_list(driver).ids.compose)
    new_chat = driver.app.screen("new_chat")
    await driver.transitions_done()
    shots(driver, "new-chat")
    await driver.tap(new_chat.ids.new_channel)
    await driver.wait_for(lambda: driver.current == "new_channel", what="the new channel form")
    form = driver.app.screen("new_channel")
    form.ids.title.focus = True
    await driver.type_text("Alice News")
    form.ids.handle.focus = True
    await driver.type_text("@alicenews")
    await driver.tap(form.ids.private)
    assert not form.public
    shots(driver, "new-channel-private")
    await driver.tap(form.ids.public)
    assert form.public
    shots(driver, "new-channel")
    await driver.tap(form.ids.create)

    await driver.wait_for(lambda: driver.current == "chat", what="the channel's chat")
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.is_channel, what="the chat knows it is a channel")
    assert chat.title == "Alice News"
    # an admin writes: the composer is there, the subscriber bar is not
    assert chat.ids.composer_bar.parent is not None
    assert not driver.find(ChannelBar)
    assert "@alicenews" in chat.subtitle

    chat.ids.composer.focus = True
    await driver.type_text("Hello subscribers")
    await driver.press_enter()
    await driver.wait_for(lambda: rows_with(driver, "Hello subscribers"), what="the post")
    await driver.wait_for(
        lambda: rows_with(driver, "Hello subscribers")[0].message.status is MessageStatus.DELIVERED,
        what="the post delivered",
    )
    channel_id = chat.conv_id

    joined = await bob.join_channel("@alicenews")
    assert joined.id == channel_id

    async def bob_reads_it() -> bool:
        page = await bob.history(channel_id)
        return any(m.body == "Hello subscribers" and m.verified for m in page.messages)

    await driver.wait_until(bob_reads_it, what="bob reads the verified post")
    shots(driver, "admin-chat")

    await driver.tap(chat.ids.header)
    await driver.wait_for(lambda: driver.current == "channel_info", what="channel info")
    info = _info(driver)
    await driver.wait_for(lambda: info.count_text == "2 subscribers", what="the count")
    assert info.is_admin
    assert info.handle == "@alicenews"
    await driver.wait_for(
        lambda: {r.username for r in info.ids.subscribers.children} == {"alice", "bob"},
        what="the subscriber list (admins see it)",
    )
    assert [r.username for r in info.ids.admins.children] == ["alice"]
    await driver.tap(info.ids.create_invite)
    await driver.wait_for(lambda: info.invite.startswith("tidings://join/"), what="a link")
    shots(driver, "admin-info")
    await driver.tap(info.ids.revoke_invite)
    await driver.wait_for(lambda: not info.invite, what="the link revoked")


async def test_subscriber_joins_by_handle_and_reads(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    carol = await peer("carol")
    channel = await bob.create_channel("Bob's Bulletin", handle="bulletin", public=True)
    await bob.post(channel.id, "First post of the bulletin")
    await carol.join_channel("@bulletin")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")

    await driver.tap(chat_list(driver).ids.compose)
    await driver.tap(driver.app.screen("new_chat").ids.join_channel)
    await driver.wait_for(lambda: driver.current == "join_channel", what="the join screen")
    join = driver.app.screen("join_channel")
    join.ids.link.focus = True
    await driver.type_text("@bulletin")
    shots(driver, "join")
    await driver.tap(join.ids.join)

    await driver.wait_for(lambda: driver.current == "chat", what="the channel's chat")
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.is_channel, what="a channel")
    await driver.wait_for(lambda: rows_with(driver, "First post of the bulletin"), what="the post")
    # a subscriber reads: no composer, the "Subscribed · Unmute" bar instead
    assert chat.ids.composer_bar.parent is None
    bars = driver.find(ChannelBar)
    assert len(bars) == 1 and bars[0].muted  # channels start muted
    assert bars[0].ids.mute.text == "Unmute"
    assert "3 subscribers" in chat.subtitle
    shots(driver, "subscriber-chat")

    await driver.tap(bars[0].ids.mute)
    await driver.wait_for(lambda: not bars[0].muted, what="unmuted")
    assert bars[0].ids.mute.text == "Mute"
    assert (alice_channel := driver.app.require_client().channel(channel.id)) is not None
    assert alice_channel.notify == "all"

    # a post that did not verify is marked, never shown as genuine
    row = rows_with(driver, "First post of the bulletin")[0]
    assert row.message.verified
    assert not driver.find(UnverifiedNote)
    chat.on_message_updated(dataclasses.replace(row.message, verified=False))
    await driver.wait_for(lambda: driver.find(UnverifiedNote), what="the warning")
    note = driver.find(UnverifiedNote)[0]
    assert note.text.endswith("Could not verify this post")
    assert note.y + note.height <= row.bubble.y + 1  # under the bubble
    shots(driver, "unverified")
    chat.on_message_updated(row.message)

    await driver.tap(chat.ids.header)
    await driver.wait_for(lambda: driver.current == "channel_info", what="channel info")
    info = _info(driver)
    await driver.wait_for(lambda: info.count_text == "3 subscribers", what="the count")
    assert not info.is_admin
    assert info.handle == "@bulletin"
    await driver.wait_for(
        lambda: [r.username for r in info.ids.admins.children] == ["bob"], what="the admins"
    )
    assert not info.ids.subscribers.children  # only admins see who subscribed
    shots(driver, "subscriber-info")

    driver.app.back()
    driver.app.back()
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(channel.id) is not None, what="the channel row")
    row_widget = listing.row(channel.id)
    assert row_widget is not None
    assert row_widget.is_channel
    assert row_widget.subscribers == "3 subscribers"
    marks = [m for m in driver.find(MegaphoneMark) if m.shown]
    assert marks and marks[0].texture is not None
    shots(driver, "chat-list")

    await driver.tap(row_widget)
    await driver.wait_for(lambda: driver.current == "chat" and chat.is_channel, what="reopened")
    await driver.tap(chat.ids.header)
    await driver.wait_for(lambda: driver.current == "channel_info", what="channel info")
    await driver.tap(info.ids.unsubscribe)
    await driver.wait_for(lambda: driver.current == "chat_list", what="back to the list")
    await driver.wait_for(
        lambda: channel.id not in listing.conversations, what="the channel off the list"
    )
    assert not [p for p in driver.find(ChannelPersonRow) if p.username == "alice"]
