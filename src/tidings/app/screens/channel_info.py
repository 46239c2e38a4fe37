"""A channel's info: its name, handle and subscriber count, the admins; for admins the
subscribers and the invite link (create, revoke); notifications and unsubscribing for all."""

from __future__ import annotations

from typing import Any

from kivy.core.clipboard import Clipboard
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app import channels
from tidings.app.screens.base import AppScreen
from tidings.client.channels import Channel
from tidings.client.types import Conversation

#: subscribers listed on the screen (the first page of the server's answer)
SUBSCRIBERS_SHOWN = 200


class ChannelPersonRow(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """An admin or a subscriber: the name and the role (kv/channels.kv)."""

    username = StringProperty("")
    role = StringProperty("")


class ChannelInfoScreen(AppScreen):
    conv_id = StringProperty("")
    title = StringProperty("")
    handle = StringProperty("")
    count_text = StringProperty("")
    is_admin = BooleanProperty(False)
    muted = BooleanProperty(True)
    #: the invite link made on this screen ("" until an admin makes one)
    invite = StringProperty("")
    busy = BooleanProperty(False)
    error = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel: Channel | None = None
        self._token = ""

    def show(self, conv_id: str) -> None:
        """Show what is stored at once, then the server's answer (and the subscribers)."""
        if conv_id != self.conv_id:
            self.invite = ""
            self._token = ""
            self.ids.subscribers.clear_widgets()
        self.conv_id = conv_id
        self.error = ""
        stored = self.client.channel(conv_id)
        if stored is not None:
            self._render(stored)
        self.tidings.tasks.spawn(
            self.client.channel_info(conv_id), on_done=self._fresh, on_error=self._failed
        )

    def on_conversation(self, conv: Conversation) -> None:
        if conv.id == self.conv_id and conv.kind == "channel":
            stored = self.client.channel(conv.id)
            if stored is not None:
                self._render(stored)

    def _fresh(self, channel: Channel) -> None:
        if channel.id != self.conv_id:
            return
        self._render(channel)
        if channel.is_admin:
            self.tidings.tasks.spawn(
                self.client.channel_subscribers(channel.id, limit=SUBSCRIBERS_SHOWN),
                on_done=self._subscribers,
                on_error=self._failed,
            )

    def _render(self, channel: Channel) -> None:
        self.channel = channel
        self.title = channel.title
        self.handle = f"@{channel.handle}" if channel.handle else "Private channel"
        self.count_text = channels.subscriber_count(channel.subscribers)
        self.is_admin = channel.is_admin
        self.muted = channel.notify != "all"
        box = self.ids.admins
        box.clear_widgets()
        for admin in channel.admins:
            box.add_widget(ChannelPersonRow(username=admin.username, role=admin.role))
        if not channel.is_admin:
            self.ids.subscribers.clear_widgets()

    def _subscribers(self, page: Any) -> None:
        box = self.ids.subscribers
        box.clear_widgets()
        for sub in page.subscribers:
            role = "" if sub.role == "subscriber" else sub.role
            box.add_widget(ChannelPersonRow(username=sub.username, role=role))

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.error = getattr(exc, "message", "") or str(exc)

    # ------------------------------------------------------------------ actions

    def toggle_mute(self) -> None:
        if self.conv_id:
            self.muted = not self.muted
            channels.set_muted(self.conv_id, self.muted)

    def create_invite(self) -> None:
        if self.busy or not self.conv_id:
            return
        self.busy = True

        def made(token: str) -> None:
            self.busy = False
            self._token = token
            self.invite = channels.invite_link(token)

        self.tidings.tasks.spawn(
            self.client.create_invite(self.conv_id), on_done=made, on_error=self._failed
        )

    def copy_invite(self) -> None:
        if self.invite:
            Clipboard.copy(self.invite)
            self.tidings.notify("Invite link copied")

    def revoke_invite(self) -> None:
        if self.busy or not self._token:
            return
        self.busy = True

        def revoked(_result: object) -> None:
            self.busy = False
            self._token = ""
            self.invite = ""
            self.tidings.notify("The invite link no longer works")

        self.tidings.tasks.spawn(
            self.client.revoke_invite(self.conv_id, self._token),
            on_done=revoked,
            on_error=self._failed,
        )

    def unsubscribe(self) -> None:
        if self.busy or not self.conv_id:
            return
        self.busy = True

        def left(_result: object) -> None:
            self.busy = False
            self.tidings.home()

        self.tidings.tasks.spawn(
            self.client.unsubscribe(self.conv_id), on_done=left, on_error=self._failed
        )
