"""The privacy part of the settings: read receipts, typing indicators, who may add you to
groups, and the accounts you block (with Unblock). The settings live on the server and are
enforced there and by the client core; this only shows and changes them."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app.blocking import unblock
from tidings.app.screens.base import running_app


class BlockedRow(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    username = StringProperty("")

    def unblock(self) -> None:
        unblock(self.username)


class PrivacySection(BoxLayout):  # type: ignore[misc]
    """kv/profile.kv; refreshed each time the settings are shown."""

    read_receipts = BooleanProperty(True)
    typing = BooleanProperty(True)
    group_adds = StringProperty("everyone")
    #: the setting being saved ("" when none): its chips are dimmed meanwhile
    saving = StringProperty("")
    none_blocked = BooleanProperty(True)

    def refresh(self) -> None:
        app = running_app()
        client = app.client
        if client is None:
            return
        spawn = app.tasks.spawn
        spawn(client.read_receipts(), on_done=self._set("read_receipts"), on_error=_quiet)
        spawn(client.typing_indicators(), on_done=self._set("typing"), on_error=_quiet)
        spawn(client.group_adds(), on_done=self._set("group_adds"), on_error=_quiet)
        spawn(client.blocked(), on_done=self._show_blocked, on_error=_quiet)

    def _set(self, name: str) -> Any:
        def store(value: Any) -> None:
            setattr(self, name, value)
            if self.saving == name:
                self.saving = ""

        return store

    def set_read_receipts(self, on: bool) -> None:
        client = running_app().require_client()
        self._change("read_receipts", client.set_read_receipts(on))

    def set_typing(self, on: bool) -> None:
        client = running_app().require_client()
        self._change("typing", client.set_typing_indicators(on))

    def set_group_adds(self, who: str) -> None:
        client = running_app().require_client()
        self._change(
            "group_adds", client.set_group_adds("contacts" if who == "contacts" else "everyone")
        )

    def _change(self, name: str, call: Any) -> None:
        self.saving = name
        app = running_app()

        def failed(exc: BaseException) -> None:
            self.saving = ""
            app.report_error(exc)

        app.tasks.spawn(call, on_done=self._set(name), on_error=failed)

    def _show_blocked(self, usernames: list[str]) -> None:
        box = self.ids.blocked
        box.clear_widgets()
        for username in sorted(usernames):
            box.add_widget(BlockedRow(username=username))
        self.none_blocked = not usernames


def _quiet(_exc: BaseException) -> None:
    """Offline: the section keeps what it showed."""
