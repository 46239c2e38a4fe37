"""The chat list: every conversation, newest activity first, live."""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout

from tidings.app import channels, timefmt
from tidings.app.avatars import avatar_of, peer_id
from tidings.app.screens.base import AppScreen, running_app
from tidings.app.screens.notifications import notifications_off
from tidings.app.theme import TICK_DOUBLE, TICK_SENDING, TICK_SENT
from tidings.client.types import Conversation, Message, MessageStatus


def preview_of(conv: Conversation) -> str:
    """The preview line (plain text, drawn by the international text engine): who said what
    last."""
    msg = conv.last_message
    if msg is None:
        return "No messages yet"
    if not msg.verified:  # never shown as genuine
        return channels.UNVERIFIED_TEXT
    body = " ".join(msg.body.split())
    if msg.kind == "system":
        return body
    if msg.is_own:
        return f"You: {body}"
    if conv.kind == "group":
        return f"{msg.sender_name}: {body}"
    return body


def tick_of(msg: Message | None) -> str:
    if msg is None or not msg.is_own or msg.kind != "text":
        return ""
    return {
        MessageStatus.SENDING: TICK_SENDING,
        MessageStatus.SENT: TICK_SENT,
        MessageStatus.DELIVERED: TICK_DOUBLE,
        MessageStatus.READ: TICK_DOUBLE,
        MessageStatus.FAILED: "!",
    }[msg.status]


class ChatRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]  # kivy is untyped
    conv_id = StringProperty("")
    title = StringProperty("")
    preview = StringProperty("")
    stamp = StringProperty("")
    unread = NumericProperty(0)
    tick = StringProperty("")
    tick_read = BooleanProperty(False)
    failed = BooleanProperty(False)
    is_group = BooleanProperty(False)
    #: notifications muted or off: a struck-through bell beside the title
    muted = BooleanProperty(False)
    #: the Note to Self chat: its own icon, pinned at the top
    note = BooleanProperty(False)
    #: someone types there: "typing…" instead of the preview (tidings.app.typing_indicator)
    typing = BooleanProperty(False)
    #: the other person's avatar picture in a direct chat (None: initials)
    photo = ObjectProperty(None, allownone=True)
    #: a channel: the megaphone beside the title and "1,204 subscribers"
    is_channel = BooleanProperty(False)
    subscribers = StringProperty("")

    def show(self, conv: Conversation) -> None:
        self.conv_id = conv.id
        self.title = conv.title
        self.note = conv.note_to_self
        self.is_group = conv.kind == "group"
        self.preview = preview_of(conv)
        self.stamp = timefmt.list_stamp(conv.last_activity) if conv.last_activity else ""
        self.unread = conv.unread
        self.tick = tick_of(conv.last_message)
        last = conv.last_message
        self.tick_read = last is not None and last.status is MessageStatus.READ
        self.failed = last is not None and last.status is MessageStatus.FAILED
        client = running_app().require_client()
        self.muted = notifications_off(client.notifications(conv.id))
        self.is_channel = conv.kind == "channel"
        self.subscribers = channels.subscriber_count(conv.subscribers) if self.is_channel else ""
        if self.is_channel:
            self.muted = channels.is_muted(client, conv.id)
        self.photo = avatar_of(client, peer_id(conv, client.account.account_id))

    def on_release(self) -> None:
        running_app().open_chat(self.conv_id)


class ChatListScreen(AppScreen):
    empty = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversations: dict[str, Conversation] = {}
        self._rows: dict[str, ChatRow] = {}
        self._order: list[str] = []
        self._reload_trigger: Any = None

    async def reload(self) -> None:
        convs = await self.client.conversations()
        self.conversations = {c.id: c for c in convs}
        self._render()
        self.tidings.first_list_shown()

    def title_of(self, conv_id: str) -> str:
        conv = self.conversations.get(conv_id)
        return conv.title if conv is not None else "Chat"

    def on_conversation(self, _conv: Conversation) -> None:
        self._reload_soon()

    def on_message(self, _msg: Message) -> None:
        self._reload_soon()

    def _reload_soon(self) -> None:
        # Which conversations are listed, and in which order, is the client core's answer to
        # conversations(); a burst of events costs one (local) query.
        if self._reload_trigger is None:
            self._reload_trigger = Clock.create_trigger(
                lambda _dt: self.tidings.tasks.spawn(self.reload()), 0.05
            )
        self._reload_trigger()

    def _render(self) -> None:
        ordered = sorted(
            self.conversations.values(),
            key=lambda c: (c.note_to_self, c.last_activity),
            reverse=True,
        )
        box = self.ids.rows
        for conv in ordered:
            row = self._rows.get(conv.id)
            if row is None:
                row = self._rows[conv.id] = ChatRow()
            row.show(conv)
        order = [c.id for c in ordered]
        if order != self._order:
            box.clear_widgets()
            for conv_id in order:
                box.add_widget(self._rows[conv_id])
            self._order = order
        self.empty = not ordered

    def row(self, conv_id: str) -> ChatRow | None:
        return self._rows.get(conv_id)
