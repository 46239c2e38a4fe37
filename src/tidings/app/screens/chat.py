"""One conversation: bubbles, day separators, ticks, replies, reactions, paging, the composer.

The message list and its paging are in :mod:`tidings.app.screens.chat_feed`, the bar that
says sending is paused (a verified contact's safety number changed) in
:mod:`tidings.app.screens.chat_paused`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput

from tidings.app import blocking, channel_menu, channels
from tidings.app.avatars import avatar_of, peer_id
from tidings.app.bubbles import (
    MessageRow,
)
from tidings.app.editing import Editing
from tidings.app.mentions import MentionAutocomplete
from tidings.app.message_menu import MessageActions
from tidings.app.screens.base import AppScreen
from tidings.app.screens.chat_feed import PAGE_SIZE, MessageFeed
from tidings.app.screens.chat_list import ChatListScreen
from tidings.app.screens.chat_paused import IDENTITY_CHANGED, PausedSending
from tidings.app.screens.group_info import GroupInfoScreen
from tidings.app.screens.notifications import notifications_off
from tidings.app.theme import rich
from tidings.app.unread import UnreadMarkers
from tidings.client.types import Conversation, Message, Page

ENTER_KEYS = (13, 271)


class NotMemberNote(Label):  # type: ignore[misc]
    """Shown instead of the composer in a group I am no longer in."""


class ComposerInput(TextInput):  # type: ignore[misc]
    """The message field: Enter sends, Shift+Enter starts a new line."""

    send = ObjectProperty(None)

    def keyboard_on_key_down(self, window: Any, keycode: Any, text: Any, modifiers: Any) -> bool:
        if keycode[0] in ENTER_KEYS and "shift" not in modifiers:
            if self.send is not None:
                self.send()
            return True
        return bool(super().keyboard_on_key_down(window, keycode, text, modifiers))


class ChatScreen(MessageFeed, PausedSending, AppScreen):
    conv_id = StringProperty("")
    title = StringProperty("")
    subtitle = StringProperty("")
    is_group = BooleanProperty(False)
    loading_older = BooleanProperty(False)
    show_jump = BooleanProperty(False)
    reply_text = StringProperty("")
    reply_name = StringProperty("")
    #: False in a group I was removed from or left
    member = BooleanProperty(True)
    #: sending is paused: a verified contact's safety number changed (the bar above the
    #: composer says so and leads to the safety number, or to the members of a group)
    paused = BooleanProperty(False)
    paused_text = StringProperty("")
    #: the composer edits an own message (`editor.message`) instead of writing a new one
    editing = BooleanProperty(False)
    #: notifications of this chat are muted (or off): the header's bell is struck through
    muted = BooleanProperty(False)
    #: "bob is typing…" under the title while someone types (tidings.app.typing_indicator)
    typing_text = StringProperty("")
    #: the other person's avatar picture in a direct chat (tidings.app.avatars)
    photo = ObjectProperty(None, allownone=True)
    #: a direct chat with someone this account blocks: a banner replaces the composer
    blocked = BooleanProperty(False)
    #: a channel (tidings.app.channels): subscribers read only, admins post
    is_channel = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversation: Conversation | None = None
        self.messages: list[Message] = []
        self.rows: dict[uuid.UUID, MessageRow] = {}
        self.before: int | None = None
        self.at_latest = True
        self.reply_to: Message | None = None
        self._generation = 0
        self._mark_read = Clock.create_trigger(self._send_read, 0.3)
        self._keep_bottom = False

    def on_kv_post(self, _base_widget: Any) -> None:
        # the widgets themselves: `ids` only holds weak proxies, which never compare identical
        self._spacer = self.ids.spacer.__self__
        self._composer_bar = self.ids.composer_bar.__self__
        self._not_member = NotMemberNote()
        self.mentions = MentionAutocomplete(self)
        self.editor = Editing(self)
        self.unread = UnreadMarkers(self)
        self.ids.composer.bind(text=lambda _c, text: self._draft_changed(text))
        # bubbles are as wide as the window allows: lay them out again when it changes
        self.bind(width=Clock.create_trigger(lambda _dt: self._refit(), 0.2))

    def on_member(self, _instance: Any, member: bool) -> None:
        """Only members can write: otherwise a note takes the composer's place."""
        column = self._composer_bar.parent or self._not_member.parent
        if column is None:
            return
        shown, hidden = (
            (self._composer_bar, self._not_member)
            if member
            else (self._not_member, self._composer_bar)
        )
        if not member:
            self.ids.composer.focus = False
        if hidden.parent is not None:
            column.remove_widget(hidden)
        if shown.parent is None:
            column.add_widget(shown, index=0)

    # ------------------------------------------------------------------ opening

    def open(self, conv_id: str, around: uuid.UUID | None = None) -> None:
        self._generation += 1
        generation = self._generation
        self.conv_id = conv_id
        self.conversation = None
        self.member = True
        self.paused = False
        self.blocked = False
        channels.show_in_chat(self, None)
        self.photo = None
        self.typing_text = self.tidings.typing.text(conv_id)
        self.messages = []
        self.rows = {}
        self.before = None
        self.at_latest = around is None
        self.cancel_reply()
        self.ids.composer.text = ""
        self.show_jump = False
        self._clear_items()
        chat_list = self.tidings.screen("chat_list")
        self.title = chat_list.title_of(conv_id) if isinstance(chat_list, ChatListScreen) else ""
        self.subtitle = ""
        self.unread.opening(conv_id, around)
        tasks = self.tidings.tasks
        tasks.spawn(
            self.client.conversation(conv_id),
            on_done=self._if_current(generation, self.on_conversation),
        )
        if around is None:
            page = self.client.history(conv_id, limit=PAGE_SIZE)
        else:
            page = self.client.page_around(conv_id, around, limit=PAGE_SIZE)
        tasks.spawn(
            page, on_done=self._if_current(generation, lambda p: self._first_page(p, around))
        )

    def _if_current(self, generation: int, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def call(value: Any) -> None:
            if generation == self._generation:
                handler(value)

        return call

    def _first_page(self, page: Page, around: uuid.UUID | None) -> None:
        self.messages = list(page.messages)
        self.before = page.before
        self._rebuild()
        if self.conversation is not None:
            self._update_paused()
        if around is not None and around in self.rows:
            target = self.rows[around]
            target.highlight(True)
            Clock.schedule_once(lambda _dt: self._scroll_to(target), 0.05)
            Clock.schedule_once(lambda _dt: target.highlight(False), 2.5)
            self.show_jump = True
        else:
            self._stick_to_bottom()
            self._mark_read()

    def on_conversation(self, conv: Conversation) -> None:
        if conv.id != self.conv_id:
            return
        regrouped = self.conversation is None or (conv.kind == "group") != self.is_group
        self.conversation = conv
        self.title = conv.title
        self.muted = notifications_off(self.client.notifications(conv.id))
        self.is_group = conv.kind == "group"
        me = self.client.account.account_id
        self.member = not self.is_group or any(m.account_id == me for m in conv.members)
        self.photo = avatar_of(self.client, peer_id(conv, me))
        self.refresh_blocked()
        if self.is_group:
            names = ", ".join(m.username for m in conv.members[:4])
            more = len(conv.members) - 4
            count = len(conv.members)
            self.subtitle = f"{count} member{'' if count == 1 else 's'} \u00b7 {names}" + (
                f" +{more}" if more > 0 else ""
            )
        elif conv.note_to_self:
            self.subtitle = "notes to yourself \u00b7 on all your devices"
        else:
            self.subtitle = "direct chat \u00b7 end-to-end encrypted"
        if regrouped and self.messages:
            self.rows = {}
            self._rebuild()
        self._update_paused()
        channels.show_in_chat(self, conv if conv.kind == "channel" else None)

    # ------------------------------------------------------------------ typing and blocking

    def _draft_changed(self, text: str) -> None:
        """Typing goes out while the draft has text (the core throttles), stops when cleared."""
        if not self.conv_id or self.tidings.client is None or self.editing or self.is_channel:
            return
        call = self.client.typing if text.strip() else self.client.stop_typing
        self.tidings.tasks.spawn(call(self.conv_id))

    def refresh_blocked(self) -> None:
        conv = self.conversation
        peer = peer_id(conv, self.client.account.account_id) if conv is not None else None
        self.blocked = peer is not None and self.client.is_blocked(peer)

    def on_blocked(self, _instance: Any, blocked: bool) -> None:
        blocking.show_blocked(self, blocked)

    def open_menu(self) -> None:
        blocking.open_menu(self)

    # ------------------------------------------------------------------ live updates

    def on_message_added(self, msg: Message) -> None:
        if msg.conv_id != self.conv_id:
            return
        if msg.id in self.rows:
            self.on_message_updated(msg)
            return
        if not self.at_latest:
            self.show_jump = True
            return
        near_bottom = self._near_bottom()
        self.messages.append(msg)
        self._ordered()
        if self.messages[-1].id == msg.id:
            self._append_item(msg)
        else:
            self._rebuild()
        if near_bottom or msg.is_own:
            self._stick_to_bottom()
        if not msg.is_own and self.manager is not None and self.manager.current == self.name:
            self._mark_read()

    def on_message_updated(self, msg: Message) -> None:
        if msg.conv_id != self.conv_id:
            return
        row = self.rows.get(msg.id)
        if row is None:
            return
        for i, old in enumerate(self.messages):
            if old.id == msg.id:
                self.messages[i] = msg
                break
        old_order = [m.id for m in self.messages]
        self._ordered()
        if [m.id for m in self.messages] != old_order:
            self._rebuild()
        row.show(msg)
        if msg.is_own and (msg.fail_reason == IDENTITY_CHANGED or self.paused):
            self._update_paused()

    def _ordered(self) -> None:
        # accepted messages in seq order, then the ones still sending in the order they were made
        self.messages.sort(
            key=lambda m: (m.seq is None, m.seq if m.seq is not None else 0, m.created_at)
        )

    # ------------------------------------------------------------------ actions

    def on_shown(self) -> None:
        if self.conv_id and self.at_latest:
            self._mark_read()

    def _send_read(self, _dt: float) -> None:
        if self.conv_id and self.tidings.client is not None:
            self.tidings.tasks.spawn(self.client.mark_read(self.conv_id))

    def send(self) -> None:
        if self.editor.save():
            return
        composer = self.ids.composer
        body = composer.text.strip()
        if not body or not self.conv_id:
            return
        reply_to = self.reply_to.id if self.reply_to is not None else None
        composer.text = ""
        self.cancel_reply()
        if not self.at_latest:
            self.open(self.conv_id)
        if self.is_channel:
            channels.post(self, body)
        else:
            self.tidings.tasks.spawn(self.client.send_text(self.conv_id, body, reply_to=reply_to))
        Clock.schedule_once(lambda _dt: setattr(composer, "focus", True), 0)

    def attach(self) -> None:
        """The attach button: pick a file and send it (tidings.app.attach)."""
        from tidings.app.attach import attach_file

        attach_file(self)

    def record_voice(self) -> None:
        """The voice button: record, or pick an audio file (tidings.app.attach)."""
        from tidings.app.attach import voice_note

        voice_note(self)

    def retry(self, message: Message) -> None:
        self.tidings.tasks.spawn(self.client.retry(message.id))

    def react(self, message: Message, emoji: str, remove: bool = False) -> None:
        self.tidings.tasks.spawn(self.client.react(self.conv_id, message.id, emoji, remove=remove))

    def start_reply(self, message: Message) -> None:
        self.reply_to = message
        self.reply_name = "You" if message.is_own else message.sender_name
        self.reply_text = rich(" ".join(message.body.split()))
        self.ids.composer.focus = True

    def cancel_reply(self) -> None:
        self.editor.cancel()
        self.reply_to = None
        self.reply_text = ""
        self.reply_name = ""

    def show_actions(self, message: Message) -> MessageActions:
        sheet = channel_menu.actions_for(self, message)
        sheet.open()
        return sheet

    def open_info(self) -> None:
        """The header was tapped: a group's members, or the safety number of a direct chat."""
        if self.conversation is None:
            return
        if self.is_channel:
            channels.open_info(self)
            return
        if self.is_group:
            info = self.tidings.screen("group_info")
            if isinstance(info, GroupInfoScreen):
                info.show(self.conversation)
                self.tidings.navigate("group_info")
            return
        peer = self.peer()
        if peer is not None:
            self.tidings.open_safety_number(peer)
