"""Notifications: a chat's level and mute (from the chat header, and group info), the muted
mark of the chat list and the chat header, and the push section of the settings.

A chat's setting is the same on all of the account's devices: it lives on the server
(``Client.set_notifications``) and ``Client.notifications`` gives the copy the last refresh
brought, so the screen shows it at once, also offline. Whether a message then alerts is the
core's decision; this screen only lets the user choose.
"""

from __future__ import annotations

import time
from typing import Any

from kivy.metrics import dp
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget
from kivy.utils import platform

from tidings.app import timefmt
from tidings.app.screens.base import AppScreen, running_app
from tidings.client.push import NotificationSetting, PushRegistration, mute_until
from tidings.client.types import Conversation
from tidings.protocol.push import MUTED_FOREVER

#: the levels offered, with what they mean
LEVELS: tuple[tuple[str, str, str], ...] = (
    ("all", "All messages", "Every new message notifies you"),
    ("mentions", "Mentions only", "Only messages that @mention you or reply to you"),
    ("none", "Nothing", "No notifications from this chat"),
)
#: the mute choices offered (``tidings.client.push.MUTE_CHOICES``), with their labels
MUTES: tuple[tuple[str, str], ...] = (
    ("1h", "1 hour"),
    ("8h", "8 hours"),
    ("1w", "1 week"),
    ("always", "Always"),
)
#: platforms where a push wakes the app; elsewhere it keeps its socket while it runs
PUSH_PLATFORMS = ("android", "ios")
PLATFORM_NAMES = {
    "apns": "Apple Push Notification service",
    "fcm": "Firebase Cloud Messaging",
    "webpush": "Web Push",
    "log": "the server's log (testing)",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def is_muted(setting: NotificationSetting) -> bool:
    return setting.muted(now_ms())


def notifications_off(setting: NotificationSetting) -> bool:
    """Muted now, or set to notify about nothing: the bell is struck through."""
    return setting.level == "none" or is_muted(setting)


def describe(setting: NotificationSetting, now: int | None = None) -> str:
    """One sentence saying how a chat notifies now."""
    current = now_ms() if now is None else now
    level = {
        "all": "all messages",
        "mentions": "mentions only",
        "none": "nothing",
    }[setting.level]
    if setting.muted(current):
        assert setting.muted_until is not None
        if setting.muted_until >= MUTED_FOREVER:
            return f"Muted until you unmute it \u00b7 then {level}"
        day = timefmt.list_stamp(setting.muted_until)
        clock = timefmt.clock(setting.muted_until)
        when = clock if day == clock else f"{day} {clock}"
        return f"Muted until {when} \u00b7 then {level}"
    return f"Notifying for {level}"


class BellShape(Widget):  # type: ignore[misc]  # kivy is untyped
    """A bell in lines around the widget's centre, ``s`` pixels a unit (fonts have none)."""

    tint = ColorProperty([0, 0, 0, 1])
    s = NumericProperty(dp(1))
    struck = BooleanProperty(False)


class BellIcon(ButtonBehavior, Widget):  # type: ignore[misc]  # kivy is untyped
    """The header's bell button; struck through when ``muted``."""

    muted = BooleanProperty(False)


class MutedMark(Widget):  # type: ignore[misc]
    """The small struck-through bell of a muted chat in the chat list."""

    shown = BooleanProperty(False)


class ChoiceRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A radio-like row: a title, a line under it, a dot when chosen."""

    value = StringProperty("")
    title = StringProperty("")
    detail = StringProperty("")
    chosen = BooleanProperty(False)


class NotificationsScreen(AppScreen):
    conv_id = StringProperty("")
    title = StringProperty("")
    is_group = BooleanProperty(False)
    level = StringProperty("all")
    muted = BooleanProperty(False)
    state = StringProperty("")
    busy = BooleanProperty(False)
    error = StringProperty("")

    def on_kv_post(self, _base_widget: Any) -> None:
        self.level_rows: dict[str, ChoiceRow] = {}
        for value, title, detail in LEVELS:
            row = ChoiceRow(value=value, title=title, detail=detail)
            row.bind(on_release=lambda r: self.choose_level(r.value))
            self.ids.levels.add_widget(row)
            self.level_rows[value] = row

    def show(self, conv: Conversation) -> None:
        self.conv_id = conv.id
        self.title = conv.title
        self.is_group = conv.kind == "group"
        self.error = ""
        self.refresh()

    def refresh(self) -> None:
        if not self.conv_id or self.tidings.client is None:
            return
        setting = self.client.notifications(self.conv_id)
        self.level = setting.level
        self.muted = is_muted(setting)
        self.state = describe(setting)
        for value, row in self.level_rows.items():
            row.chosen = value == setting.level

    def on_conversation(self, conv: Conversation) -> None:
        if conv.id == self.conv_id:
            self.title = conv.title
            self.refresh()

    def on_shown(self) -> None:
        self.refresh()

    def choose_level(self, level: str) -> None:
        setting = self.client.notifications(self.conv_id)
        until = setting.muted_until if is_muted(setting) else None
        self._store(level, until)

    def mute(self, choice: str) -> None:
        self._store(self.level, mute_until(choice))

    def unmute(self) -> None:
        self._store(self.level, None)

    def _store(self, level: str, until: int | None) -> None:
        if self.busy or not self.conv_id:
            return
        self.busy = True
        self.error = ""
        conv_id = self.conv_id

        def done(_setting: NotificationSetting) -> None:
            self.busy = False
            if conv_id == self.conv_id:
                self.refresh()

        def failed(exc: BaseException) -> None:
            self.busy = False
            self.error = getattr(exc, "message", "") or str(exc)

        self.tidings.tasks.spawn(
            self.client.set_notifications(conv_id, level, until), on_done=done, on_error=failed
        )


class PushSection(BoxLayout):  # type: ignore[misc]
    """The settings' push section: whether this device is registered for push wake-ups, and
    the action that clears the registration."""

    status = StringProperty("")
    detail = StringProperty("")
    registered = BooleanProperty(False)

    def refresh(self) -> None:
        app = running_app()
        if app.client is None:
            return
        if platform not in PUSH_PLATFORMS:
            self.status = "Push is not used on this computer"
            self.detail = "The app keeps its own connection open while it runs."
        else:
            self.status = "Checking\u2026"
            self.detail = ""
        app.tasks.spawn(app.client.push_registration(), on_done=self._show, on_error=self._failed)

    def _show(self, registration: PushRegistration | None) -> None:
        self.registered = registration is not None
        if registration is not None:
            name = PLATFORM_NAMES.get(registration.platform, registration.platform)
            self.status = f"This device is registered for push ({registration.platform})"
            since = (
                f" since {timefmt.list_stamp(registration.updated_at)}"
                if registration.updated_at
                else ""
            )
            self.detail = f"Wake-ups go through {name}{since}; they carry no message text."
        elif platform in PUSH_PLATFORMS:
            self.status = "This device is not registered for push"
            self.detail = "Messages arrive when you open the app."

    def _failed(self, exc: BaseException) -> None:
        self.detail = f"Could not ask the server: {getattr(exc, 'message', '') or exc}"

    def clear(self) -> None:
        app = running_app()
        if app.client is None or not self.registered:
            return
        app.tasks.spawn(app.client.clear_push(), on_done=lambda _r: self.refresh())
