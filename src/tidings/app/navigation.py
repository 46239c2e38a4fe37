"""The part of :class:`~tidings.app.application.TidingsApp` that moves between screens (a
mixin): forward with a back stack, back (Escape, Android's back button), home, and opening a
chat, its notification settings, a message's details or a safety number."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.uix.screenmanager import SlideTransition

from tidings.app import channels
from tidings.app.screens.chat import ChatScreen
from tidings.app.screens.message_info import MessageInfoScreen
from tidings.app.screens.notifications import NotificationsScreen
from tidings.app.screens.safety import SafetyNumberScreen

if TYPE_CHECKING:
    from tidings.app.layout import PaneLayout
    from tidings.app.screens.base import AppScreen
    from tidings.client.types import Conversation, Message

#: Escape on desktop, the back button on Android.
BACK_KEY = 27


class Navigation:
    """Mixed into :class:`~tidings.app.application.TidingsApp`."""

    if TYPE_CHECKING:
        manager: Any
        layout: PaneLayout
        _screens: dict[str, AppScreen]
        _stack: list[str]

    def screen(self, name: str) -> AppScreen:
        return self._screens[name]

    def navigate(self, name: str, remember: bool = True) -> None:
        name = self.layout.resolve(name)
        current = self.manager.current
        if remember and current and current != name:
            self._stack.append(current)
        self.manager.transition = SlideTransition(direction="left", duration=0.18)
        self.manager.current = name
        self.screen(name).on_shown()

    def back(self) -> bool:
        """Go to the previous screen; False when there is none."""
        if not self._stack:
            return False
        name = self.layout.resolve(self._stack.pop())
        self.manager.transition = SlideTransition(direction="right", duration=0.18)
        self.manager.current = name
        self.screen(name).on_shown()
        return True

    def home(self) -> None:
        self._stack.clear()
        self.navigate("chat_list", remember=False)

    def _notifications(self) -> NotificationsScreen:
        screen = self.screen("notifications")
        assert isinstance(screen, NotificationsScreen)
        return screen

    def open_notifications(self, conv: Conversation | None) -> None:
        """A chat's notification level and mute (from its header or group info)."""
        if conv is not None and conv.kind == "channel":  # channels: all or nothing
            channels.toggle_mute(conv.id)
        elif conv is not None:
            self._notifications().show(conv)
            self.navigate("notifications")

    def open_message_info(self, message: Message) -> None:
        """Delivered/read per member and the edit history of a message (its menu's Info)."""
        info = self.screen("message_info")
        assert isinstance(info, MessageInfoScreen)
        self.navigate("message_info")
        info.show(message)

    def open_chat(self, conv_id: str, around: Any = None, replace: bool = False) -> None:
        """Show a conversation, at its latest messages or around message id `around`."""
        chat = self.screen("chat")
        assert isinstance(chat, ChatScreen)
        if replace:
            self._stack = ["chat_list"]
            self.navigate("chat", remember=False)
        else:
            self.navigate("chat")
        chat.open(conv_id, around)

    def _on_keyboard(self, _window: Any, key: int, *_args: Any) -> bool:
        if key == BACK_KEY:
            return self.back()
        return False

    def open_safety_number(self, username: str) -> None:
        """Show the safety number shared with `username`."""
        safety = self.screen("safety")
        assert isinstance(safety, SafetyNumberScreen)
        self.navigate("safety")
        safety.show(username)
