"""A channel's info: its name, handle and subscriber count (everyone), the admins; for admins
the subscribers, a page at a time (the next comes when the list is scrolled to its end or with
"Show more"), and the invite link (create, revoke); for the owner, adding an admin (by
username, from the subscribers) and removing one; notifications and unsubscribing for all.
Who may do what is the server's and the client core's; a refusal shows in plain words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.core.clipboard import Clipboard
from kivy.metrics import dp
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app import channels
from tidings.app.screens.base import AppScreen
from tidings.client.channels import Channel
from tidings.client.types import Conversation
from tidings.protocol.channels import SubscriberPage

#: subscribers asked for at a time (the server's pages hold up to 1,000)
SUBSCRIBER_PAGE = 100
#: the end of the screen this close (dp) to the bottom of the view loads the next page
LOAD_MORE_WITHIN = 24
MAKE_ADMIN = "Make admin"
REMOVE_ADMIN = "Remove admin"


def _said(exc: BaseException) -> str:
    """The client's message of a refusal, as a sentence."""
    text = getattr(exc, "message", "") or str(exc)
    return text[:1].upper() + text[1:]


class ChannelPersonRow(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """An admin or a subscriber: the name, the role and, for the owner, what can be done
    (make admin, remove admin) (kv/channels.kv)."""

    username = StringProperty("")
    role = StringProperty("")
    #: the button's label ("" : no button)
    action = StringProperty("")

    def __init__(
        self, handler: Callable[[ChannelPersonRow], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.handler = handler

    def act(self) -> None:
        if self.handler is not None and self.action:
            self.handler(self)


class ChannelInfoScreen(AppScreen):
    conv_id = StringProperty("")
    title = StringProperty("")
    handle = StringProperty("")
    count_text = StringProperty("")
    is_admin = BooleanProperty(False)
    #: the owner adds and removes admins
    is_owner = BooleanProperty(False)
    muted = BooleanProperty(True)
    #: the invite link made on this screen ("" until an admin makes one)
    invite = StringProperty("")
    busy = BooleanProperty(False)
    error = StringProperty("")
    #: why adding or removing an admin did not work (under the field)
    admin_error = StringProperty("")
    #: the server has more subscribers than listed ("Show more")
    more = BooleanProperty(False)
    loading = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel: Channel | None = None
        self._token = ""
        self._next: str | None = None
        self._listing = 0  # which subscriber list a page belongs to

    def show(self, conv_id: str) -> None:
        """Show what is stored at once, then the server's answer (and the subscribers)."""
        if conv_id != self.conv_id:
            self.invite = ""
            self._token = ""
            self.ids.subscribers.clear_widgets()
            self.more = False
            self.ids.admin_name.text = ""
        self.conv_id = conv_id
        self.error = ""
        self.admin_error = ""
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
            self._load_subscribers(None)

    def _render(self, channel: Channel) -> None:
        self.channel = channel
        self.title = channel.title
        self.handle = f"@{channel.handle}" if channel.handle else "Private channel"
        self.count_text = channels.subscriber_count(channel.subscribers)
        self.is_admin = channel.is_admin
        self.is_owner = channel.role == "owner"
        self.muted = channel.notify != "all"
        box = self.ids.admins
        box.clear_widgets()
        for admin in channel.admins:
            box.add_widget(self._person(admin.username, admin.role))
        if not channel.is_admin:
            self._listing += 1
            self.ids.subscribers.clear_widgets()
            self.more = False
            self.loading = False
        else:
            for row in self.subscriber_rows():
                row.action = self._action_for(row.role)

    def _person(self, username: str, role: str) -> ChannelPersonRow:
        role = "" if role == "subscriber" else role
        return ChannelPersonRow(
            self._act, username=username, role=role, action=self._action_for(role)
        )

    def _action_for(self, role: str) -> str:
        if not self.is_owner:
            return ""
        return {"": MAKE_ADMIN, "admin": REMOVE_ADMIN}.get(role, "")

    # ------------------------------------------------------------------ subscribers, paged

    def _load_subscribers(self, start: str | None) -> None:
        if start is None:
            self._listing += 1
        elif self.loading:
            return
        listing, conv_id = self._listing, self.conv_id
        self.loading = True

        def got(page: SubscriberPage) -> None:
            if listing == self._listing and conv_id == self.conv_id:
                self._subscribers(page, fresh=start is None)

        def failed(exc: BaseException) -> None:
            if listing == self._listing:
                self.loading = False
                self._failed(exc)

        self.tidings.tasks.spawn(
            self.client.channel_subscribers(conv_id, start=start, limit=SUBSCRIBER_PAGE),
            on_done=got,
            on_error=failed,
        )

    def _subscribers(self, page: SubscriberPage, fresh: bool) -> None:
        box = self.ids.subscribers
        if fresh:
            box.clear_widgets()
        for sub in page.subscribers:
            box.add_widget(self._person(sub.username, sub.role))
        self._next = page.next
        self.more = page.next is not None
        self.loading = False

    def show_more(self) -> None:
        """The next page of subscribers (the "Show more" button, or scrolled to the end)."""
        if self.more and not self.loading and self._next is not None:
            self._load_subscribers(self._next)

    def on_scroll(self, scroll_y: float) -> None:
        scroller = self.ids.scroller
        hidden = max(scroller.children[0].height - scroller.height, 0)
        if hidden and scroll_y * hidden <= dp(LOAD_MORE_WITHIN):
            self.show_more()

    def subscriber_rows(self) -> list[ChannelPersonRow]:
        """The listed subscribers, top to bottom."""
        return [
            r for r in reversed(self.ids.subscribers.children) if isinstance(r, ChannelPersonRow)
        ]

    # ------------------------------------------------------------------ admins (the owner)

    def add_admin(self) -> None:
        """The "Add admin" button: the username in the field becomes an admin."""
        name = self.ids.admin_name.text.strip().removeprefix("@")
        if not name:
            self.admin_error = "Enter the username of a subscriber."
            return
        self._set_admin(name, True)

    def _act(self, row: ChannelPersonRow) -> None:
        self._set_admin(row.username, row.action == MAKE_ADMIN)

    def _set_admin(self, name: str, admin: bool) -> None:
        if self.busy or not self.conv_id:
            return
        self.busy = True
        self.admin_error = ""
        conv_id = self.conv_id
        call = self.client.add_channel_admin if admin else self.client.remove_channel_admin

        def done(channel: Channel) -> None:
            self.busy = False
            if conv_id != self.conv_id:
                return
            self._render(channel)
            for row in self.subscriber_rows():
                if row.username == name:
                    row.role = "admin" if admin else ""
                    row.action = self._action_for(row.role)
            if admin:
                self.ids.admin_name.text = ""
            self.tidings.notify(f"@{name} is {'now' if admin else 'no longer'} an admin")

        def refused(exc: BaseException) -> None:
            self.busy = False
            self.admin_error = _said(exc)

        self.tidings.tasks.spawn(call(conv_id, name), on_done=done, on_error=refused)

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
