"""Channels in the chat screen and the chat list: the megaphone mark, the subscriber count,
the read-only bar of a subscriber ("Subscribed · Unmute", in place of the composer), posting
for admins, and the warning under a post whose signature did not check out. What a channel
is, who may post and whether a post verifies are the client core's (client/channels.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.graphics import Color, Line
from kivy.metrics import dp
from kivy.properties import BooleanProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app.screens.base import running_app
from tidings.app.text.widgets import IntlLabel

if TYPE_CHECKING:
    from kivy.uix.widget import Widget

    from tidings.app.screens.chat import ChatScreen
    from tidings.client import Client
    from tidings.client.types import Conversation, Message

#: the megaphone (a Twemoji picture, drawn by IntlLabel)
MEGAPHONE = "\U0001f4e3"
#: the link form of an invite token (as the command line prints it)
INVITE_LINK = "tidings://join/{token}"
UNVERIFIED_TEXT = "Could not verify this post"


def subscriber_count(count: int) -> str:
    """ "1,204 subscribers", "1 subscriber"."""
    return f"{count:,} subscriber{'' if count == 1 else 's'}"


def invite_link(token: str) -> str:
    return INVITE_LINK.format(token=token)


def is_muted(client: Client, conv_id: str) -> bool:
    """A channel notifies nobody unless its level is "all" (channels start muted)."""
    channel = client.channel(conv_id)
    return channel is None or channel.notify != "all"


def set_muted(conv_id: str, muted: bool) -> None:
    app = running_app()
    client = app.require_client()
    app.tasks.spawn(client.set_channel_notify(conv_id, "none" if muted else "all"))


def toggle_mute(conv_id: str) -> None:
    set_muted(conv_id, not is_muted(running_app().require_client(), conv_id))


class MegaphoneMark(IntlLabel):
    """The megaphone beside a channel's title; no width when not shown (kv/channels.kv)."""

    shown = BooleanProperty(False)


class ChannelBar(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """ "Subscribed · Mute/Unmute": a subscriber's bar in place of the composer."""

    muted = BooleanProperty(True)

    def __init__(self, chat: ChatScreen, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat

    def toggle(self) -> None:
        if self.chat.conv_id:
            set_muted(self.chat.conv_id, not self.muted)


class UnverifiedNote(IntlLabel):
    """The warning under a post whose signature or author did not check out."""


# ---------------------------------------------------------------------- the chat screen


def _bar(chat: ChatScreen) -> ChannelBar:
    bar: ChannelBar | None = getattr(chat, "_channel_bar", None)
    if bar is None:
        bar = ChannelBar(chat)
        chat._channel_bar = bar
    return bar


def _swap(chat: ChatScreen, read_only: bool) -> None:
    composer = chat.ids.composer_bar.__self__
    bar = _bar(chat)
    column = composer.parent or bar.parent
    if column is None:
        return
    shown, hidden = (bar, composer) if read_only else (composer, bar)
    if read_only:
        chat.ids.composer.focus = False
    if hidden.parent is not None:
        column.remove_widget(hidden)
    if shown.parent is None:
        column.add_widget(shown, index=0)


def _text_only(chat: ChatScreen, text_only: bool) -> None:
    """Posts are text: no attach or voice buttons in a channel's composer."""
    for name in ("attach", "voice"):
        button = chat.ids[name]
        button.opacity = 0 if text_only else 1
        button.disabled = text_only
        button.width = 0 if text_only else dp(40)


def show_in_chat(chat: ChatScreen, conv: Conversation | None) -> None:
    """Set the chat screen up for a channel (`conv`), or back for any other chat (None)."""
    client = chat.client
    channel = client.channel(conv.id) if conv is not None else None
    chat.is_channel = conv is not None
    admin = conv is not None and (conv.is_admin or (channel is not None and channel.is_admin))
    _swap(chat, read_only=conv is not None and not admin)
    _text_only(chat, conv is not None)
    if conv is None:
        return
    muted = is_muted(client, conv.id)
    chat.muted = muted
    _bar(chat).muted = muted
    handle = f"@{channel.handle} \u00b7 " if channel is not None and channel.handle else ""
    chat.subtitle = f"{handle}{subscriber_count(conv.subscribers)}"


def post(chat: ChatScreen, body: str) -> None:
    """An admin's post: the core signs it, stores it as sending, and delivers it."""
    chat.tidings.tasks.spawn(chat.client.post(chat.conv_id, body))


def open_info(chat: ChatScreen) -> None:
    from tidings.app.screens.channel_info import ChannelInfoScreen

    info = chat.tidings.screen("channel_info")
    if isinstance(info, ChannelInfoScreen):
        chat.tidings.navigate("channel_info")
        info.show(chat.conv_id)


def mark_unverified(row: Widget, bubble: Widget, message: Message) -> None:
    """Under a post that did not verify: the warning (and a warning frame on its bubble)."""
    if message.verified:
        return
    with bubble.canvas.after:
        Color(*running_app().theme.warning)
        frame = Line(width=dp(1.5))

    def redraw(*_args: Any) -> None:
        frame.rounded_rectangle = (bubble.x, bubble.y, bubble.width, bubble.height, dp(16))

    bubble.bind(pos=redraw, size=redraw)
    redraw()
    row.add_widget(UnverifiedNote(text=f"\u26a0 {UNVERIFIED_TEXT}"))
