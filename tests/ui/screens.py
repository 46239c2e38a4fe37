"""Typed handles on the app's screens and widgets, for the UI tests."""

from __future__ import annotations

from tidings.app.bubbles import MessageRow
from tidings.app.harness import AppDriver
from tidings.app.screens.chat import ChatScreen
from tidings.app.screens.chat_list import ChatListScreen


def chat_screen(driver: AppDriver) -> ChatScreen:
    screen = driver.app.screen("chat")
    assert isinstance(screen, ChatScreen)
    return screen


def chat_list(driver: AppDriver) -> ChatListScreen:
    screen = driver.app.screen("chat_list")
    assert isinstance(screen, ChatListScreen)
    return screen


def rows_with(driver: AppDriver, body: str) -> list[MessageRow]:
    return driver.find(MessageRow, lambda r: r.message.body == body)
