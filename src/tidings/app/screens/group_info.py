"""A group's members; admins add and remove them; anyone can leave; a member's row opens
their safety number."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout

from tidings.app.avatars import avatar_of
from tidings.app.screens.base import AppScreen, running_app
from tidings.client.types import Conversation


class MemberRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """A member; tapping someone else opens their safety number."""

    username = StringProperty("")
    role = StringProperty("member")
    removable = BooleanProperty(False)
    is_me = BooleanProperty(False)
    #: the display name, and the avatar picture (tidings.app.avatars)
    display = StringProperty("")
    photo = ObjectProperty(None, allownone=True)

    def remove(self) -> None:
        screen = running_app().screen("group_info")
        if isinstance(screen, GroupInfoScreen):
            screen.remove_member(self.username)

    def on_release(self) -> None:
        if not self.is_me and self.username:
            running_app().open_safety_number(self.username)


class GroupInfoScreen(AppScreen):
    conv_id = StringProperty("")
    title = StringProperty("")
    subtitle = StringProperty("")
    is_admin = BooleanProperty(False)
    busy = BooleanProperty(False)
    error = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversation: Conversation | None = None

    def show(self, conv: Conversation) -> None:
        self.conversation = conv
        self.conv_id = conv.id
        self.title = conv.title
        self.is_admin = conv.is_admin
        count = len(conv.members)
        self.subtitle = f"Group \u00b7 {count} member{'' if count == 1 else 's'}"
        self.error = ""
        me = self.client.account.username
        box = self.ids.members
        box.clear_widgets()
        ordered = sorted(conv.members, key=lambda m: (m.role != "admin", m.username))
        for member in ordered:
            box.add_widget(
                MemberRow(
                    username=member.username,
                    display=member.name,
                    photo=avatar_of(self.client, member.account_id),
                    role=member.role,
                    is_me=member.username == me,
                    removable=conv.is_admin and member.username != me,
                )
            )

    def on_conversation(self, conv: Conversation) -> None:
        if conv.id == self.conv_id:
            self.show(conv)

    def _run(self, coro: Any, after: Any = None) -> None:
        self.busy = True
        self.error = ""

        def done(result: Any) -> None:
            self.busy = False
            if isinstance(result, Conversation):
                self.show(result)
            if after is not None:
                after()

        def failed(exc: BaseException) -> None:
            self.busy = False
            self.error = getattr(exc, "message", "") or str(exc)

        self.tidings.tasks.spawn(coro, on_done=done, on_error=failed)

    def add_member(self) -> None:
        username = self.ids.new_member.text.strip().lstrip("@")
        if not username or self.busy:
            return
        self.ids.new_member.text = ""
        self._run(self.client.add_members(self.conv_id, [username]))

    def remove_member(self, username: str) -> None:
        if not self.busy:
            self._run(self.client.remove_member(self.conv_id, username))

    def leave(self) -> None:
        if self.busy:
            return
        self._run(self.client.leave_group(self.conv_id), after=self.tidings.home)
