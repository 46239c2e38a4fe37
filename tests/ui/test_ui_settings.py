"""The connection state on screen, and the settings screen with its theme switch."""

from __future__ import annotations

import json

import pytest
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, Shots
from tests.ui.screens import chat_list

from tidings.app.application import SETTINGS_FILE
from tidings.app.widgets import ConnectionBanner

pytestmark = pytest.mark.ui


async def test_connection_state_is_visible(
    app: AppFactory, server: ServerProcess, shots: Shots
) -> None:
    driver = await app("alice")
    banner = driver.find(ConnectionBanner)[0]
    await driver.wait_for(lambda: driver.app.connection_state == "online", what="online")
    assert not banner.shown

    server.kill()
    await driver.wait_for(lambda: driver.app.connection_state == "offline", what="offline")
    banner = next(b for b in driver.find(ConnectionBanner) if b.get_root_window() is not None)
    # the backoff grows with each failed attempt: soon there is a countdown to show
    await driver.wait_for(
        lambda: "retrying in" in banner.text, within=20, what="the retry countdown"
    )
    assert banner.shown
    assert banner.text.startswith("Offline")
    shots(driver, "offline")

    server.start()
    await driver.wait_for(
        lambda: driver.app.connection_state == "online", within=40, what="online again"
    )
    assert not banner.shown


async def test_settings_show_account_and_switch_theme(
    app: AppFactory, server: ServerProcess, shots: Shots
) -> None:
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    await driver.tap(chat_list(driver).ids.settings)
    await driver.wait_for(lambda: driver.current == "settings", what="settings")
    settings = driver.app.screen("settings")
    account = driver.app.require_client().account
    assert settings.username == "alice"
    assert settings.device_id == str(account.device_id)
    assert settings.server == server.url
    light_bg = list(driver.app.theme.bg)

    await driver.tap(settings.ids.dark)
    assert driver.app.theme.name == "dark"
    assert list(driver.app.theme.bg) != light_bg
    saved = json.loads((driver.app.profile / SETTINGS_FILE).read_text())
    assert saved == {"theme": "dark"}
    shots(driver, "dark")

    await driver.tap(settings.ids.back)
    await driver.wait_for(lambda: driver.current == "chat_list", what="back to the list")


async def test_onboarding_reports_an_unreachable_server_then_succeeds(
    app: AppFactory, server: ServerProcess, shots: Shots
) -> None:
    driver = await app()
    onboarding = driver.app.screen("onboarding")
    await driver.wait_for(lambda: onboarding.ids.server.text, what="the prefilled server")
    assert onboarding.ids.server.text == server.url
    onboarding.ids.server.text = "http://127.0.0.1:9"  # nothing listens on the discard port
    onboarding.ids.username.focus = True
    await driver.type_text("dana")
    await driver.press_enter()
    await driver.wait_for(lambda: onboarding.error, what="the error")
    assert "Could not create the account" in onboarding.error
    assert driver.current == "onboarding"
    shots(driver, "error")

    onboarding.ids.server.text = server.url
    await driver.tap(onboarding.ids.create)
    # the display name step after the account is made: skipped
    await driver.wait_for(lambda: driver.current == "profile", what="the display name step")
    await driver.tap(driver.app.screen("profile").ids.skip)
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    assert driver.app.require_client().account.username == "dana"
