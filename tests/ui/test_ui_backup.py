"""The encrypted history backup in the app: turning it on from settings, restoring an account
from onboarding, a wrong passphrase, and older history loading from the vault as one scrolls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import ServerProcess
from tests.ui.conftest import AppFactory, PeerFactory, Shots
from tests.ui.screens import chat_list, chat_screen, rows_with

from tidings.app.bubbles import MessageRow
from tidings.app.harness import AppDriver
from tidings.app.screens.backup import BackupScreen
from tidings.app.screens.restore import RestoreScreen
from tidings.client import Client
from tidings.client.api import ClientConfig

pytestmark = pytest.mark.ui

STRONG = "violet tundra parsnip 91 ocelot lantern"


def backup_screen(driver: AppDriver) -> BackupScreen:
    screen = driver.app.screen("backup")
    assert isinstance(screen, BackupScreen)
    return screen


def restore_screen(driver: AppDriver) -> RestoreScreen:
    screen = driver.app.screen("restore")
    assert isinstance(screen, RestoreScreen)
    return screen


async def fill(driver: AppDriver, field: Any, text: str) -> None:
    field.text = ""
    field.focus = True
    await driver.type_text(text)
    field.focus = False


async def texts_arrive(client: Client, conv_id: str, count: int) -> None:
    for _ in range(600):
        page = await client.history(conv_id, limit=count + 5)
        if sum(1 for m in page.messages if m.kind == "text") >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} messages never arrived")


async def account_with_backup(
    server: ServerProcess, profile: Path, bob: Client, count: int, keep: int = 1000
) -> tuple[Client, str]:
    """alice at ``profile`` with ``count`` messages from bob, backed up (not started)."""
    alice = await Client.create_account(profile, server.url, "alice")
    await alice.close()
    alice = await Client.open(profile, config=ClientConfig(keep_messages=keep))
    await alice.start()
    await alice.wait_synced(20)
    conv = await bob.open_direct("alice")
    for i in range(count):
        await bob.send_text(conv.id, f"Story line {i}")
    await texts_arrive(alice, conv.id, count)
    await alice.enable_backup(STRONG)
    await alice.backup_now()
    await alice.close()
    return alice, conv.id


async def test_enable_backup_from_settings_refuses_weak_then_takes_strong(
    app: AppFactory, shots: Shots
) -> None:
    driver = await app("alice")
    await driver.wait_for(lambda: driver.current == "chat_list", what="the chat list")
    await driver.tap(chat_list(driver).ids.settings)
    await driver.wait_for(lambda: driver.current == "settings", what="settings")
    settings = driver.app.screen("settings")
    settings.ids.backup.parent.parent.scroll_to(settings.ids.backup, animate=False)
    await driver.settle(0.2)
    await driver.tap(settings.ids.backup)
    await driver.wait_for(lambda: driver.current == "backup", what="the backup screen")
    screen = backup_screen(driver)
    await driver.wait_for(lambda: screen.status_title == "Off", what="the status")

    await fill(driver, screen.ids.passphrase, "password123")
    assert 0 <= screen.score <= 1
    assert screen.feedback.startswith(("Very weak", "Weak"))
    await fill(driver, screen.ids.confirm, "password123")
    await driver.tap(screen.ids.enable)
    assert "too weak" in screen.error
    assert not screen.busy
    await driver.settle(0.2)
    shots(driver, "weak")

    await fill(driver, screen.ids.passphrase, STRONG)
    assert screen.score >= 3
    await fill(driver, screen.ids.confirm, STRONG + " x")
    await driver.tap(screen.ids.enable)
    assert screen.error == "The two passphrases differ."

    await fill(driver, screen.ids.confirm, STRONG)
    await driver.tap(screen.ids.enable)
    assert screen.error == ""
    assert screen.busy and screen.progress
    await driver.settle(0.1)
    shots(driver, "enrolling")
    await driver.wait_for(lambda: screen.enabled, within=60, what="backup on")
    await driver.wait_for(lambda: "uploaded" in screen.progress, what="the first upload")
    assert screen.status_title == "On"
    assert "Last upload" in screen.status_text
    status = await driver.app.require_client().backup_status()
    assert status.enabled and status.pages
    await driver.settle(0.3)
    shots(driver, "enabled")


async def test_restore_from_onboarding_shows_the_chat_list_with_history(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    bob = await peer("bob")
    _alice, conv_id = await account_with_backup(server, tmp_path / "old-phone", bob, 12)
    driver = await app()
    await driver.wait_for(lambda: driver.current == "onboarding", what="onboarding")
    await driver.tap(driver.app.screen("onboarding").ids.restore)
    await driver.wait_for(lambda: driver.current == "restore", what="the restore screen")
    screen = restore_screen(driver)
    assert screen.ids.server.text == server.url
    await fill(driver, screen.ids.username, "alice")
    await fill(driver, screen.ids.passphrase, STRONG)
    await driver.settle(0.1)
    shots(driver, "form")
    await driver.tap(screen.ids.restore)
    assert screen.busy and screen.progress
    await driver.wait_for(lambda: driver.current == "chat_list", within=60, what="the chat list")
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv_id) is not None, what="the restored chat")
    await driver.settle(0.3)
    shots(driver, "chat-list")
    row = listing.row(conv_id)
    assert row is not None and "Story line 11" in row.preview
    await driver.tap(row)
    await driver.wait_for(lambda: rows_with(driver, "Story line 0"), what="the restored history")
    assert rows_with(driver, "Story line 11")
    assert driver.app.require_client().account.username == "alice"
    await driver.settle(0.3)
    shots(driver, "history")


async def test_a_wrong_passphrase_is_refused_and_repeated_tries_are_slowed(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    bob = await peer("bob")
    await account_with_backup(server, tmp_path / "old-phone", bob, 2)
    driver = await app()
    await driver.wait_for(lambda: driver.current == "onboarding", what="onboarding")
    await driver.tap(driver.app.screen("onboarding").ids.restore)
    screen = restore_screen(driver)
    await fill(driver, screen.ids.username, "alice")
    await fill(driver, screen.ids.passphrase, "not my passphrase at all")
    await driver.tap(screen.ids.restore)
    await driver.wait_for(lambda: not screen.busy, within=30, what="the answer")
    assert "does not open" in screen.error
    assert driver.current == "restore"
    assert not (driver.app.profile / "token").exists()
    await driver.settle(0.2)
    shots(driver, "wrong")
    for _ in range(6):
        if "Too many" in screen.error:
            break
        await driver.tap(screen.ids.restore)
        await driver.wait_for(lambda: not screen.busy, within=30, what="the answer")
    assert "Too many wrong passphrases. Try again in" in screen.error
    assert screen.wait_left.startswith("You can try again in")
    assert not screen.ids.restore.enabled
    await driver.settle(0.2)
    shots(driver, "rate-limited")


async def test_scrolling_up_loads_older_messages_from_the_vault(
    app: AppFactory, peer: PeerFactory, server: ServerProcess, tmp_path: Path, shots: Shots
) -> None:
    bob = await peer("bob")
    profile = tmp_path / "app-profile"  # the app fixture's profile
    _alice, conv_id = await account_with_backup(server, profile, bob, 120, keep=20)
    driver = await app()
    await driver.wait_for(lambda: driver.app.client is not None, what="the client")
    client = driver.app.require_client()
    local_rows = client._store.db.execute(
        "SELECT count(*) FROM messages WHERE conv_id = ?", (conv_id,)
    ).fetchone()[0]
    assert local_rows <= 25  # the rest is only in the vault
    # each vault page takes a while to come: the screen must say it is loading
    api = client._backup.api
    real_fetch = api.fetch

    async def slow_fetch(page_ids: Any) -> Any:
        await asyncio.sleep(1.5)
        return await real_fetch(page_ids)

    api.fetch = slow_fetch  # type: ignore[method-assign]
    listing = chat_list(driver)
    await driver.wait_for(lambda: listing.row(conv_id) is not None, what="the chat")
    row = listing.row(conv_id)
    assert row is not None
    await driver.tap(row)
    chat = chat_screen(driver)
    await driver.wait_for(lambda: rows_with(driver, "Story line 119"), within=30, what="the end")
    assert not rows_with(driver, "Story line 0")
    while not rows_with(driver, "Story line 0"):
        shown = len(driver.find(MessageRow))
        history = client._backup._history
        if history is not None:
            history.forget()  # every page from the server, not from memory
        await driver.scroll_to_top(chat.ids.scroller)
        await driver.wait_for(lambda: chat.loading_older, within=5, what="loading")
        assert chat.ids.loading_older.text == "Loading older messages\u2026"
        assert chat.ids.loading_older.opacity == 1
        await driver.frames(3)
        shots(driver, "loading-older")
        await driver.wait_for(
            lambda shown=shown: len(driver.find(MessageRow)) > shown, within=30, what="older"
        )
        await driver.wait_for(lambda: not chat.loading_older, what="loading done")
    bodies = [m.body for m in chat.messages if m.kind == "text"]
    assert bodies == [f"Story line {i}" for i in range(120)]
    chat.ids.scroller.scroll_y = 1.0
    await driver.settle(0.3)
    shots(driver, "top-from-vault")
