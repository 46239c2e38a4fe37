"""Profiles, typing indicators, privacy settings and blocking through the real widgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kivy.core.window import Window
from PIL import Image
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app import attach
from tidings.app.blocking import BlockedBanner, ChatMenu, ConfirmBlock
from tidings.app.harness import AppDriver
from tidings.app.privacy import BlockedRow, PrivacySection
from tidings.app.screens.profile import ProfileScreen
from tidings.app.typing_indicator import typing_text
from tidings.client import Client

pytestmark = pytest.mark.ui


def picture(path: Path, colour: tuple[int, int, int]) -> Path:
    image = Image.new("RGB", (320, 320), colour)
    for x in range(100, 220):
        for y in range(100, 220):
            image.putpixel((x, y), (255, 255, 255))
    image.save(path)
    return path


def modal(kind: type[Any]) -> Any:
    found = [w for w in Window.children if isinstance(w, kind)]
    assert found, f"no {kind.__name__} open"
    return found[0]


async def open_settings(driver: AppDriver) -> Any:
    await driver.tap(chat_list(driver).ids.settings)
    await driver.wait_for(lambda: driver.current == "settings", what="settings")
    return driver.app.screen("settings")


async def test_profile_name_and_avatar_on_both_sides(
    app: AppFactory,
    peer: PeerFactory,
    shots: Shots,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bob = await peer("bob")
    await bob.set_profile(name="Bob 小林", avatar=picture(tmp_path / "bob.png", (40, 120, 200)))
    chosen: list[Callable[[Path], None]] = []
    monkeypatch.setattr(attach, "PICKER", lambda _title, _filters, then: chosen.append(then))

    # onboarding, then the display name step
    driver = await app()
    await driver.wait_for(lambda: driver.current == "onboarding", what="onboarding")
    onboarding = driver.app.screen("onboarding")
    await driver.wait_for(lambda: onboarding.ids.server.text, what="server prefilled")
    onboarding.ids.username.focus = True
    await driver.type_text("alice")
    await driver.tap(onboarding.ids.create)
    await driver.wait_for(lambda: driver.current == "profile", what="the display name step")
    profile = driver.app.screen("profile")
    assert isinstance(profile, ProfileScreen)
    assert profile.welcome
    profile.ids.name.focus = True
    await driver.type_text("Alice Liddell")
    await driver.tap(profile.ids.pick_avatar)
    assert chosen, "the picker was not opened"
    chosen[0](picture(tmp_path / "alice.png", (200, 60, 90)))
    await driver.wait_for(lambda: profile.photo is not None and not profile.busy, what="photo")
    shots(driver, "welcome-profile")
    await driver.tap(profile.ids.save)
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")

    mine = await driver.app.require_client().profile_of()
    assert mine.name == "Alice Liddell"
    assert mine.avatar is not None

    # bob writes: his name and photo in alice's list, hers on his side
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, "Hi Alice")
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id) is not None, what="bob's chat")
    await driver.wait_for(
        lambda: listing.row(conv.id).title == "Bob 小林" and listing.row(conv.id).photo,
        within=30,
        what="bob's name and photo in the list",
    )
    shots(driver, "list-with-avatar")

    async def bob_sees_alice() -> bool:
        seen = await bob.profile_of("alice")
        return seen.name == "Alice Liddell" and seen.avatar is not None

    await driver.wait_until(bob_sees_alice, within=30, what="alice's profile on bob's side")

    driver.app.open_chat(conv.id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: chat.photo is not None, what="bob's photo in the header")
    await driver.transitions_done()
    shots(driver, "chat-header-avatar")

    # the profile from settings: the about line is saved too
    await driver.tap(chat.ids.back)
    settings = await open_settings(driver)
    await driver.wait_for(lambda: settings.photo is not None, what="own photo in settings")
    assert settings.display_name == "Alice Liddell"
    shots(driver, "settings")
    await driver.tap(settings.ids.profile)
    await driver.wait_for(lambda: driver.current == "profile", what="the profile screen")
    await driver.wait_for(lambda: profile.ids.name.text == "Alice Liddell", what="filled")
    assert not profile.welcome
    profile.ids.about.focus = True
    await driver.type_text("Curiouser and curiouser")
    shots(driver, "profile")
    await driver.tap(profile.ids.save)
    await driver.wait_for(lambda: driver.current == "settings", what="back in settings")
    assert (await driver.app.require_client().profile_of()).about == "Curiouser and curiouser"


async def conversation_with_bob(driver: AppDriver, bob: Client, text: str) -> str:
    conv = await bob.open_direct("alice")
    await bob.send_text(conv.id, text)
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv.id) is not None, what="bob's chat")
    return conv.id


async def test_typing_shows_in_header_and_list(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv_id = await conversation_with_bob(driver, bob, "hello")
    row = chat_list(driver).row(conv_id)
    assert row is not None

    await bob.typing(conv_id)
    await driver.wait_for(lambda: row.typing, what="typing… in the list")
    shots(driver, "list-typing")
    driver.app.open_chat(conv_id)
    chat = chat_screen(driver)
    await driver.wait_for(
        lambda: chat.typing_text == "bob is typing\u2026", what="typing in the header"
    )
    assert chat.ids.subtitle.text == "bob is typing\u2026"
    await driver.transitions_done()
    shots(driver, "header-typing")
    await bob.stop_typing(conv_id)
    await driver.wait_for(lambda: not chat.typing_text, what="typing gone from the header")
    assert not row.typing
    assert chat.ids.subtitle.text == chat.subtitle

    # and the other way: the composer tells bob
    alice_id = driver.app.require_client().account.account_id
    chat.ids.composer.focus = True
    await driver.type_text("I am wri")
    await driver.wait_for(lambda: bob.typing_now(conv_id) == [alice_id], what="bob sees it")
    chat.ids.composer.text = ""
    await driver.wait_for(lambda: not bob.typing_now(conv_id), what="stopped on clearing")


async def test_privacy_settings_are_stored(app: AppFactory, shots: Shots) -> None:
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    client = driver.app.require_client()
    settings = await open_settings(driver)
    privacy = settings.ids.privacy
    assert isinstance(privacy, PrivacySection)
    await driver.wait_for(lambda: privacy.read_receipts and privacy.none_blocked, what="loaded")
    scroller = privacy.parent.parent
    scroller.scroll_y = 0  # the section is at the end
    await driver.settle(0.3)

    await driver.tap(privacy.ids.receipts_off)
    await driver.wait_for(lambda: not privacy.read_receipts and not privacy.saving, what="off")
    assert await client.read_receipts() is False
    await driver.tap(privacy.ids.typing_off)
    await driver.wait_for(lambda: not privacy.typing and not privacy.saving, what="typing off")
    assert await client.typing_indicators() is False
    await driver.tap(privacy.ids.adds_contacts)
    await driver.wait_for(lambda: privacy.group_adds == "contacts", what="contacts only")
    assert await client.group_adds() == "contacts"
    shots(driver, "privacy")

    await driver.tap(privacy.ids.receipts_on)
    await driver.wait_for(lambda: privacy.read_receipts and not privacy.saving, what="on again")
    assert await client.read_receipts() is True


async def test_block_from_the_header_then_unblock(
    app: AppFactory, peer: PeerFactory, shots: Shots
) -> None:
    bob = await peer("bob")
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    conv_id = await conversation_with_bob(driver, bob, "before")
    driver.app.open_chat(conv_id)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: rows_with(driver, "before"), what="bob's message")

    await driver.tap(chat.ids.info)
    menu = modal(ChatMenu)
    assert menu.ids.block.text == "Block bob"
    shots(driver, "menu")
    await driver.tap(menu.ids.block)
    confirm = modal(ConfirmBlock)
    assert "won't be told" in confirm.text
    shots(driver, "confirm")
    await driver.tap(confirm.ids.confirm)
    await driver.wait_for(lambda: chat.blocked, what="blocked")
    [banner] = driver.find(BlockedBanner)
    assert chat.ids.composer_bar.parent is None
    assert await driver.app.require_client().blocked() == ["bob"]
    shots(driver, "blocked")

    await bob.send_text(conv_id, "after the block")
    await driver.settle(2.0)
    assert not rows_with(driver, "after the block")

    # the settings list it
    await driver.tap(chat.ids.back)
    settings = await open_settings(driver)
    await driver.wait_for(lambda: driver.find(BlockedRow), what="bob in the blocked list")
    await driver.tap(settings.ids.back)
    driver.app.open_chat(conv_id)
    await driver.wait_for(lambda: chat.blocked and driver.find(BlockedBanner), what="banner")
    [banner] = driver.find(BlockedBanner)

    await driver.tap(banner.ids.unblock)
    await driver.wait_for(lambda: not chat.blocked, what="unblocked")
    assert chat.ids.composer_bar.parent is not None
    assert not driver.find(BlockedBanner)
    await bob.send_text(conv_id, "after the unblock")
    await driver.wait_for(lambda: rows_with(driver, "after the unblock"), what="arrives again")
    shots(driver, "unblocked")


def test_typing_text() -> None:
    assert typing_text([]) == ""
    assert typing_text(["bob"]) == "bob is typing\u2026"
    assert typing_text(["bob", "carol"]) == "bob and carol are typing\u2026"
    assert typing_text(["bob", "carol", "dan", "eve"]) == "bob, carol and 2 more are typing\u2026"
