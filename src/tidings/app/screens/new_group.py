"""Create a group: a title and members picked by username."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, ListProperty, StringProperty

from tidings.app.screens.base import AppScreen
from tidings.app.theme import SYMBOL_FONT
from tidings.app.widgets import Chip
from tidings.client.types import Conversation


class NewGroupScreen(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")
    members = ListProperty([])

    def on_shown(self) -> None:
        self.error = ""
        self.busy = False
        self.members = []
        self.ids.title.text = ""
        self.ids.member.text = ""

    def add_member(self) -> None:
        username = self.ids.member.text.strip().lstrip("@")
        self.ids.member.text = ""
        if username and username not in self.members:
            self.members = [*self.members, username]

    def remove_member(self, username: str) -> None:
        self.members = [m for m in self.members if m != username]

    def on_members(self, _instance: Any, members: list[str]) -> None:
        box = self.ids.picked
        box.clear_widgets()
        for username in members:
            chip = Chip(text=f"{username}  [font={SYMBOL_FONT}]\u00d7[/font]", selected=True)
            chip.bind(on_release=lambda _c, name=username: self.remove_member(name))
            box.add_widget(chip)

    def create(self) -> None:
        if self.busy:
            return
        if self.ids.member.text.strip():
            self.add_member()
        title = self.ids.title.text.strip()
        if not title:
            self.error = "Give the group a name."
            return
        if not self.members:
            self.error = "Add at least one member."
            return
        self.busy = True
        self.error = ""
        self.tidings.tasks.spawn(
            self.client.create_group(title, list(self.members)),
            on_done=self._created,
            on_error=self._failed,
        )

    def _created(self, conv: Conversation) -> None:
        self.busy = False
        self.tidings.open_chat(conv.id, replace=True)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.error = getattr(exc, "message", "") or str(exc)
