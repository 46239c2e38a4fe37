"""Join a channel by ``@handle`` or invite link, and make a new one (name, handle, public or
private). Both open the channel's chat when done."""

from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from tidings.app.screens.base import AppScreen
from tidings.client.channels import Channel


class _ChannelForm(AppScreen):
    busy = BooleanProperty(False)
    error = StringProperty("")

    def _opened(self, channel: Channel) -> None:
        self.busy = False
        self.tidings.open_chat(channel.id, replace=True)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.error = getattr(exc, "message", "") or str(exc)


class JoinChannelScreen(_ChannelForm):
    def on_shown(self) -> None:
        self.error = ""
        self.busy = False
        self.ids.link.text = ""

    def join(self) -> None:
        link = self.ids.link.text.strip()
        if not link or self.busy:
            return
        self.busy = True
        self.error = ""
        self.tidings.tasks.spawn(
            self.client.join_channel(link), on_done=self._opened, on_error=self._failed
        )


class NewChannelScreen(_ChannelForm):
    public = BooleanProperty(True)

    def on_shown(self) -> None:
        self.error = ""
        self.busy = False
        self.public = True
        self.ids.title.text = ""
        self.ids.handle.text = ""

    def create(self) -> None:
        title = self.ids.title.text.strip()
        handle = self.ids.handle.text.strip().lstrip("@")
        if self.busy:
            return
        if not title:
            self.error = "Give the channel a name"
            return
        self.busy = True
        self.error = ""
        self.tidings.tasks.spawn(
            self.client.create_channel(
                title, handle=handle if self.public else None, public=self.public
            ),
            on_done=self._opened,
            on_error=self._failed,
        )
