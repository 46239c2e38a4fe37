"""Start a direct chat by username (or go on to a new group)."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from tidings.app.screens.base import AppScreen
from tidings.client.types import Conversation


class NewChatScreen(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")

    def on_shown(self) -> None:
        self.error = ""
        self.busy = False
        self.ids.username.text = ""

    def start(self) -> None:
        username = self.ids.username.text.strip().lstrip("@")
        if not username or self.busy:
            return
        self.busy = True
        self.error = ""
        self.tidings.tasks.spawn(
            self.client.open_direct(username), on_done=self._opened, on_error=self._failed
        )

    def open_note(self) -> None:
        """Note to Self: messages to one's own devices."""
        if self.busy:
            return
        self.busy = True
        self.tidings.tasks.spawn(
            self.client.note_to_self(), on_done=self._opened, on_error=self._failed
        )

    def _opened(self, conv: Conversation) -> None:
        self.busy = False
        self.tidings.open_chat(conv.id, replace=True)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.error = getattr(exc, "message", "") or str(exc)
