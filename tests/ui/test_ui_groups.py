"""Creating a group through the UI, then managing it from group info."""

from __future__ import annotations

import pytest
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen

from tidings.app.bubbles import SystemNote
from tidings.app.screens.group_info import GroupInfoScreen, MemberRow

pytestmark = pytest.mark.ui


async def test_creating_a_group(app: AppFactory, peer: PeerFactory, shots: Shots) -> None:
    bob = await peer("bob")
    carol = await peer("carol")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")

    await driver.tap(chat_list(driver).ids.compose)
    new_chat = driver.app.screen("new_chat")
    await driver.tap(new_chat.ids.new_group)
    await driver.wait_for(lambda: driver.current == "new_group", what="the new group screen")
    new_group = driver.app.screen("new_group")
    new_group.ids.title.focus = True
    await driver.type_text("Book club")
    new_group.ids.member.focus = True
    await driver.type_text("bob")
    await driver.press_enter()
    new_group.ids.member.focus = True
    await driver.type_text("carol")
    await driver.tap(new_group.ids.add)
    assert new_group.members == ["bob", "carol"]
    shots(driver, "new-group")
    await driver.tap(new_group.ids.create)

    await driver.wait_for(lambda: driver.current == "chat", what="the new group's chat")
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.title == "Book club" and chat.is_group, what="the title")
    await driver.wait_for(lambda: driver.find(SystemNote), what="the 'created the group' note")

    async def bob_and_carol_see_it() -> bool:
        for peer_client in (bob, carol):
            titles = [c.title for c in await peer_client.conversations()]
            if "Book club" not in titles:
                return False
        return True

    await driver.wait_until(bob_and_carol_see_it, what="the members see the group")

    await driver.tap(chat.ids.header)
    await driver.wait_for(lambda: driver.current == "group_info", what="group info")
    info = driver.app.screen("group_info")
    assert isinstance(info, GroupInfoScreen)
    await driver.wait_for(lambda: len(driver.find(MemberRow)) == 3, what="three members")
    assert info.is_admin
    shots(driver, "group-info")

    carol_row = driver.find(MemberRow, lambda r: r.username == "carol")[0]
    await driver.tap(carol_row.ids.kick)
    await driver.wait_for(lambda: len(driver.find(MemberRow)) == 2, what="carol removed")
    assert {r.username for r in driver.find(MemberRow)} == {"alice", "bob"}

    info.ids.new_member.focus = True
    await driver.type_text("carol")
    await driver.tap(info.ids.add)
    await driver.wait_for(lambda: len(driver.find(MemberRow)) == 3, what="carol added back")

    conv_id = chat.conv_id
    await driver.tap(info.ids.leave)
    await driver.wait_for(lambda: driver.current == "chat_list", what="back to the chat list")
    await driver.wait_for(
        lambda: conv_id not in chat_list(driver).conversations, what="the group off the list"
    )
    assert chat_list(driver).row(conv_id) not in chat_list(driver).ids.rows.children

    async def alice_gone() -> bool:
        group = next(c for c in await bob.conversations() if c.id == conv_id)
        return "alice" not in {m.username for m in group.members}

    await driver.wait_until(alice_gone, what="bob sees alice leave")
