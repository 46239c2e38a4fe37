"""Channels through the real widgets, past reading and posting: the message menu of a post
offers only what the server takes (a subscriber and an admin each), a post the server refused
is posted again from the menu, the owner adds and removes admins in channel info (refusals in
plain words, the controls hidden from subscribers), and a channel with more subscribers than a
page lists them all, a page at a time."""

from __future__ import annotations

from typing import Any

import pytest
from kivy.metrics import dp
from tests.integration.test_channel_admins_client import subscribe_many
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app import channels
from tidings.app.channel_menu import ChannelPostActions
from tidings.app.harness import AppDriver
from tidings.app.message_menu import ChoiceSheet, MessageActions
from tidings.app.screens.channel_info import (
    LOAD_MORE_WITHIN,
    MAKE_ADMIN,
    REMOVE_ADMIN,
    SUBSCRIBER_PAGE,
    ChannelInfoScreen,
    ChannelPersonRow,
)
from tidings.app.screens.message_info import MessageInfoScreen
from tidings.client.types import MessageStatus

pytestmark = pytest.mark.ui


async def menu_of(driver: AppDriver, body: str) -> MessageActions:
    await driver.wait_for(lambda: driver.overlay(MessageActions) is None, what="menus closed")
    await driver.long_press(
        rows_with(driver, body)[0].bubble, until=lambda: driver.overlay(MessageActions)
    )
    sheet: MessageActions = await driver.opened(MessageActions)
    return sheet


def labels(sheet: MessageActions) -> list[str]:
    return [c.text for c in reversed(sheet.ids.actions.children)]


async def open_channel(driver: AppDriver, channel_id: str) -> None:
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(channel_id) is not None, what="the channel row")
    await driver.tap(listing.row(channel_id))
    chat = chat_screen(driver)
    await driver.wait_for(
        lambda: chat.conv_id == channel_id and chat.is_channel, what="the channel's chat"
    )


async def open_info(driver: AppDriver) -> ChannelInfoScreen:
    await driver.tap(chat_screen(driver).ids.header)
    await driver.wait_for(lambda: driver.current == "channel_info", what="channel info")
    info = driver.app.screen("channel_info")
    assert isinstance(info, ChannelInfoScreen)
    await driver.transitions_done()
    return info


def person(box: Any, username: str) -> ChannelPersonRow | None:
    rows = [r for r in box.children if isinstance(r, ChannelPersonRow) and r.username == username]
    return rows[0] if rows else None


async def test_a_subscriber_gets_copy_info_and_delete_for_me_only(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    channel = await bob.create_channel("Bob's Bulletin", handle="bulletin", public=True)
    post = await bob.post(channel.id, "Road closed on Friday")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    await driver.app.require_client().join_channel("@bulletin")
    await open_channel(driver, channel.id)
    await driver.wait_for(lambda: rows_with(driver, "Road closed on Friday"), what="the post")

    sheet = await menu_of(driver, "Road closed on Friday")
    assert isinstance(sheet, ChannelPostActions)
    # no reactions, reply, edit or delete for everyone: a channel takes posts from admins only
    assert labels(sheet) == ["Copy text", "Info", "Delete"]
    assert not sheet.ids.reactions.children and sheet.ids.reactions.height == 0
    shots(driver, "subscriber-menu")

    await driver.tap(sheet.action("Info"))
    info = driver.app.screen("message_info")
    assert isinstance(info, MessageInfoScreen)
    await driver.wait_for(
        lambda: info.details is not None and info.details.message.id == post.id, what="info"
    )
    assert driver.current == "message_info"
    shots(driver, "subscriber-post-info")
    await driver.tap(info.ids.back)
    await driver.wait_for(lambda: driver.current == "chat", what="back in the chat")

    sheet = await menu_of(driver, "Road closed on Friday")
    await driver.tap(sheet.action("Delete"))
    confirm: ChoiceSheet = await driver.opened(ChoiceSheet)
    with pytest.raises(LookupError):
        confirm.choice("Delete for everyone")
    shots(driver, "subscriber-delete")
    await driver.tap(confirm.choice("Delete for me"))
    await driver.wait_for(lambda: not rows_with(driver, "Road closed on Friday"), what="gone")
    client = driver.app.require_client()
    assert await client.message(post.id) is None
    await client.sync_channels()  # a catch-up does not bring it back
    assert await client.message(post.id) is None
    assert (await bob.message(post.id)) is not None

    # channel info: the count for everyone, no admin controls for a subscriber
    info_screen = await open_info(driver)
    await driver.wait_for(lambda: info_screen.count_text == "2 subscribers", what="the count")
    assert not info_screen.is_admin and not info_screen.is_owner
    box = info_screen.ids.admin_box
    assert info_screen.ids.add_admin.disabled and box.opacity == 0 and box.height == 0
    assert not [r for r in driver.find(ChannelPersonRow) if r.action]
    assert not info_screen.ids.subscribers.children and not info_screen.more
    shots(driver, "subscriber-info")


async def test_an_admin_gets_no_edit_and_retries_a_refused_post(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    carol = await peer("carol")
    channel = await bob.create_channel("Newsroom", handle="newsroom", public=True)
    await carol.join_channel("@newsroom")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    client = driver.app.require_client()
    await client.join_channel("@newsroom")
    await bob.add_channel_admin(channel.id, "alice")
    await client.channel_info(channel.id)
    await open_channel(driver, channel.id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.ids.composer_bar.parent is not None, what="the composer")

    chat.ids.composer.focus = True
    await driver.type_text("Budget vote tonight")
    await driver.press_enter()
    await driver.wait_for(
        lambda: (
            rows_with(driver, "Budget vote tonight")
            and rows_with(driver, "Budget vote tonight")[0].message.status
            is MessageStatus.DELIVERED
        ),
        what="the post delivered",
    )
    sheet = await menu_of(driver, "Budget vote tonight")
    # an admin's own post: still no edit or delete for everyone (the server has neither)
    assert labels(sheet) == ["Copy text", "Info", "Delete"]
    assert not sheet.ids.reactions.children
    shots(driver, "admin-menu")
    await driver.tap(sheet.action("Copy text"))
    from kivy.core.clipboard import Clipboard

    await driver.wait_for(lambda: Clipboard.paste() == "Budget vote tonight", what="copied")

    # bob takes the admin role back; the app has not heard yet: the server refuses the post
    await bob.remove_channel_admin(channel.id, "alice")
    chat.ids.composer.focus = True
    await driver.type_text("Polls open at eight")
    await driver.press_enter()
    await driver.wait_for(
        lambda: (
            rows_with(driver, "Polls open at eight")
            and rows_with(driver, "Polls open at eight")[0].message.status is MessageStatus.FAILED
        ),
        what="the post refused",
    )
    await bob.add_channel_admin(channel.id, "alice")
    await client.channel_info(channel.id)
    sheet = await menu_of(driver, "Polls open at eight")
    assert labels(sheet) == ["Retry sending", "Copy text", "Info", "Delete"]
    shots(driver, "admin-failed-menu")
    await driver.tap(sheet.action("Retry sending"))
    await driver.wait_for(
        lambda: (
            rows_with(driver, "Polls open at eight")[0].message.status is MessageStatus.DELIVERED
        ),
        what="the post posted again",
    )

    async def carol_reads_both() -> bool:
        page = await carol.history(channel.id)
        return [(m.body, m.verified) for m in page.messages] == [
            ("Budget vote tonight", True),
            ("Polls open at eight", True),
        ]

    await driver.wait_until(carol_reads_both, what="carol reads both posts, verified")
    shots(driver, "admin-retried")


async def test_the_owner_adds_and_removes_admins_in_channel_info(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    carol = await peer("carol")
    await peer("dave")  # exists, never subscribes
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    channel = await driver.app.require_client().create_channel(
        "Town Hall", handle="townhall", public=True
    )
    await bob.join_channel("@townhall")
    await carol.join_channel("@townhall")
    await open_channel(driver, channel.id)
    info = await open_info(driver)
    await driver.wait_for(lambda: info.count_text == "3 subscribers", what="the count")
    await driver.wait_for(lambda: len(info.subscriber_rows()) == 3, what="the subscribers")
    assert info.is_owner and not info.ids.add_admin.disabled and info.ids.admin_box.opacity == 1
    assert person(info.ids.subscribers, "bob").action == MAKE_ADMIN  # type: ignore[union-attr]
    assert person(info.ids.subscribers, "alice").action == ""  # type: ignore[union-attr]
    assert person(info.ids.admins, "alice").action == ""  # type: ignore[union-attr]

    async def add(name: str) -> None:
        info.ids.admin_name.text = ""
        info.ids.admin_name.focus = True
        await driver.type_text(name)
        await driver.tap(info.ids.add_admin)

    await add("dave")
    await driver.wait_for(lambda: info.admin_error, what="the refusal")
    assert info.admin_error == "@dave is not subscribed to this channel"
    shots(driver, "not-subscribed")
    await add("ghost")
    await driver.wait_for(lambda: "ghost" in info.admin_error, what="the refusal")
    assert info.admin_error == "There is no user @ghost"
    await add("@bob")
    await driver.wait_for(lambda: person(info.ids.admins, "bob") is not None, what="bob an admin")
    assert not info.admin_error and info.ids.admin_name.text == ""
    assert person(info.ids.admins, "bob").action == REMOVE_ADMIN  # type: ignore[union-attr]
    sub_row = person(info.ids.subscribers, "bob")
    assert sub_row is not None and sub_row.role == "admin" and sub_row.action == REMOVE_ADMIN
    assert (await bob.channel_info(channel.id)).is_admin
    await add("bob")
    await driver.wait_for(lambda: info.admin_error, what="the refusal")
    assert info.admin_error == "@bob is already an admin of this channel"

    # from the subscriber list: carol becomes an admin
    carol_row = person(info.ids.subscribers, "carol")
    assert carol_row is not None
    await driver.tap(carol_row.ids.action)
    await driver.wait_for(lambda: person(info.ids.admins, "carol") is not None, what="carol")
    assert (await carol.channel_info(channel.id)).is_admin
    admins = [r.username for r in reversed(info.ids.admins.children)]
    assert admins[0] == "alice" and sorted(admins[1:]) == ["bob", "carol"]  # the owner first
    shots(driver, "admins-added")

    # bob's admin row: removed
    bob_row = person(info.ids.admins, "bob")
    assert bob_row is not None
    await driver.tap(bob_row.ids.action)
    await driver.wait_for(lambda: person(info.ids.admins, "bob") is None, what="bob removed")
    assert not (await bob.channel_info(channel.id)).is_admin
    back = person(info.ids.subscribers, "bob")
    assert back is not None and back.role == "" and back.action == MAKE_ADMIN
    assert not info.admin_error
    shots(driver, "admin-removed")


async def test_more_than_a_page_of_subscribers_are_all_listed(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    channel = await driver.app.require_client().create_channel(
        "Stadium", handle="stadium", public=True
    )
    names = [f"fan{i:03d}" for i in range(230)]
    await subscribe_many(driver.app.require_client().account.server_url, channel.id, names)
    await open_channel(driver, channel.id)
    info = await open_info(driver)
    total = len(names) + 1
    await driver.wait_for(
        lambda: info.count_text == channels.subscriber_count(total), what="the count"
    )
    await driver.wait_for(lambda: len(info.subscriber_rows()) == SUBSCRIBER_PAGE, what="a page")
    assert info.more and info.ids.show_more.opacity == 1
    # the button in view, not yet the end of the screen: nothing loads by itself
    scroller = info.ids.scroller
    content = scroller.children[0]
    above_end = info.ids.show_more.y - content.y - dp(30)
    assert above_end > dp(LOAD_MORE_WITHIN)
    scroller.scroll_y = above_end / (content.height - scroller.height)
    await driver.frames(3)
    assert len(info.subscriber_rows()) == SUBSCRIBER_PAGE and not info.loading
    shots(driver, "show-more")

    await driver.tap(info.ids.show_more)  # the button
    await driver.wait_for(
        lambda: len(info.subscriber_rows()) == 2 * SUBSCRIBER_PAGE and not info.loading,
        what="the second page",
    )
    scroller.scroll_y = 0  # scrolled to the end: the rest
    await driver.wait_for(lambda: not info.more and not info.loading, what="the last page")
    listed = [r.username for r in info.subscriber_rows()]
    assert len(listed) == total and sorted(listed) == sorted([*names, "alice"])
    assert info.ids.show_more.opacity == 0
    await driver.frames(3)
    scroller.scroll_y = 0
    await driver.frames(3)
    shots(driver, "all-listed")
