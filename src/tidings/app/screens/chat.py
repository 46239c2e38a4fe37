"""One conversation: bubbles, day separators, ticks, replies, reactions, paging, the composer."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kivy.clock import Clock
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from tidings.app import blocking, channel_menu, channels, timefmt
from tidings.app.avatars import avatar_of, peer_id
from tidings.app.bubbles import (
    DaySeparator,
    IdentityNote,
    MessageRow,
    PlaceholderRow,
    SystemNote,
)
from tidings.app.editing import Editing
from tidings.app.mentions import MentionAutocomplete
from tidings.app.message_menu import MessageActions
from tidings.app.screens.base import AppScreen
from tidings.app.screens.chat_list import ChatListScreen
from tidings.app.screens.group_info import GroupInfoScreen
from tidings.app.screens.notifications import notifications_off
from tidings.app.screens.safety import is_identity_line, is_undecryptable
from tidings.app.theme import rich
from tidings.app.unread import UnreadMarkers
from tidings.client.types import Conversation, Message, Page

#: Messages per page when scrolling up.
PAGE_SIZE = 40
#: scroll_y above this (1 is the very top) loads the next older page.
LOAD_OLDER_AT = 0.97
ENTER_KEYS = (13, 271)
#: `Message.fail_reason` of a message held back because a verified contact's key changed.
IDENTITY_CHANGED = "identity_changed"


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


class ChatScreen(AppScreen):
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

    # ------------------------------------------------------------------ changed safety numbers

    def peer(self) -> str | None:
        """The other person of a direct chat."""
        conv = self.conversation
        if conv is None or conv.kind != "direct" or conv.note_to_self:
            return None
        me = self.client.account.account_id
        others = [m.username for m in conv.members if m.account_id != me]
        return others[0] if others else conv.title

    def on_identity_changed(self, _username: str) -> None:
        """Someone's safety number changed or was verified again: is sending paused here?"""
        self._update_paused()

    def _update_paused(self) -> None:
        conv = self.conversation
        if conv is None:
            self.paused = False
            return
        me = self.client.account.account_id
        others = [m.username for m in conv.members if m.account_id != me]
        changes = self.tidings.identity_changes
        changed = [name for name in others if changes.get(name)]
        own = [m for m in self.messages if m.is_own and m.kind == "text"]
        held = bool(own) and own[-1].fail_reason == IDENTITY_CHANGED
        peer = self.peer()
        if changed or (held and peer is None):
            self._show_paused(changed[0] if changed else None)
        elif held and peer is not None:
            conv_id = self.conv_id

            def checked(verified: bool) -> None:
                if conv_id == self.conv_id:
                    if verified:
                        self.paused = False
                    else:
                        self._show_paused(peer)

            self.tidings.tasks.spawn(
                self.client.is_verified(peer), on_done=checked, on_error=lambda _e: None
            )
        else:
            self.paused = False

    def _show_paused(self, name: str | None) -> None:
        if self.is_group:
            who = f"the safety number of {rich(name)}" if name else "a member's safety number"
            self.paused_text = (
                f"[b]Sending is paused:[/b] {who} changed. Tap to open the members and "
                "verify it again."
            )
        else:
            peer = name or self.peer() or self.title
            self.paused_text = (
                f"[b]Sending to {rich(peer)} is paused:[/b] their safety number changed. "
                "Tap to compare it and verify it again."
            )
        self.paused = True

    def review_paused(self) -> None:
        """The paused bar was tapped: to the safety number (or the group's members)."""
        peer = self.peer()
        if peer is not None:
            self.tidings.open_safety_number(peer)
        else:
            self.open_info()

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

    # ------------------------------------------------------------------ the item list

    def _clear_items(self) -> None:
        feed = self.ids.feed
        for child in list(feed.children):
            if child is not self._spacer:
                feed.remove_widget(child)

    def _rebuild(self) -> None:
        self._clear_items()
        for widget in self._widgets_for(self.messages, None):
            self.ids.feed.add_widget(widget)

    def _append_item(self, msg: Message) -> None:
        previous = self.messages[-2] if len(self.messages) > 1 else None
        for widget in self._widgets_for([msg], previous):
            self.ids.feed.add_widget(widget)

    def _widgets_for(self, messages: Iterable[Message], previous: Message | None) -> list[Widget]:
        widgets: list[Widget] = []
        last_day = timefmt.day_key(previous.created_at) if previous is not None else None
        for msg in messages:
            day = timefmt.day_key(msg.created_at)
            if day != last_day:
                widgets.append(DaySeparator(text=timefmt.day_label(day)))
                last_day = day
            separator = self.unread.before(msg)
            if separator is not None:
                widgets.append(separator)
            if is_undecryptable(msg):
                widgets.append(PlaceholderRow(msg, self))
                continue
            if is_identity_line(msg):
                name = msg.sender_name
                text = (
                    f"{rich(msg.body)}\n[b][u]View safety number[/u][/b]"
                    if name != self.client.account.username
                    else rich(msg.body)
                )
                widgets.append(IdentityNote(text=text, username=name))
                continue
            if msg.kind == "system":
                widgets.append(SystemNote(text=rich(msg.body)))
                continue
            row = self.rows.get(msg.id)
            if row is None:
                row = self.rows[msg.id] = MessageRow(msg, self)
            elif row.parent is not None:
                row.parent.remove_widget(row)
            widgets.append(row)
        return widgets

    def restyle(self) -> None:
        """Redraw the bubbles in the current theme's colours."""
        self._redraw(list(self.rows.values()))

    def _refit(self) -> None:
        self._redraw([r for r in self.rows.values() if r.built_for != r.max_bubble_width])

    def _redraw(self, rows: list[MessageRow]) -> None:
        if not rows:
            return
        at_bottom = self._near_bottom()
        scroll_y = self.ids.scroller.scroll_y
        for row in rows:
            row.show(row.message)
        if at_bottom:
            self._stick_to_bottom()
        else:
            Clock.schedule_once(lambda _dt: setattr(self.ids.scroller, "scroll_y", scroll_y), 0)

    def row_for(self, message_id: uuid.UUID) -> MessageRow | None:
        return self.rows.get(message_id)

    def on_message_removed(self, conv_id: str, message_id: uuid.UUID) -> None:
        """A message was deleted on this device only: its row goes."""
        if conv_id != self.conv_id or message_id not in self.rows:
            return
        self.messages = [m for m in self.messages if m.id != message_id]
        del self.rows[message_id]
        self.refresh_items()

    def refresh_items(self) -> None:
        """Lay the item list out again (the unread separator came, a row went)."""
        at_bottom = self._near_bottom()
        self._rebuild()
        if at_bottom:
            self._stick_to_bottom()

    def scroll_into_view(self, widget: Widget) -> None:
        self._scroll_to(widget)

    # ------------------------------------------------------------------ scrolling

    def _near_bottom(self) -> bool:
        scroller = self.ids.scroller
        return bool(scroller.scroll_y <= 0.02 or self.ids.feed.height <= scroller.height)

    def _stick_to_bottom(self) -> None:
        self._keep_bottom = True
        Clock.schedule_once(self._to_bottom, 0)
        Clock.schedule_once(self._to_bottom, 0.1)

    def _to_bottom(self, _dt: float) -> None:
        if self._keep_bottom:
            self.ids.scroller.scroll_y = 0
            self._keep_bottom = False

    def _scroll_to(self, row: Widget) -> None:
        scroller = self.ids.scroller
        if row.parent is not None:
            scroller.scroll_to(row, padding=dp(80), animate=False)

    def on_scroll(self, scroll_y: float) -> None:
        scroller = self.ids.scroller
        content = self.ids.feed.height
        scrollable = content > scroller.height + 1
        distance = (content - scroller.height) * scroll_y if scrollable else 0
        self.show_jump = (not self.at_latest) or distance > scroller.height * 1.2
        if scrollable and scroll_y >= LOAD_OLDER_AT:
            self.load_older()

    def load_older(self) -> None:
        if self.loading_older or self.before is None or not self.messages:
            return
        self.loading_older = True
        generation = self._generation
        self.tidings.tasks.spawn(
            self.client.history(self.conv_id, before=self.before, limit=PAGE_SIZE),
            on_done=self._if_current(generation, self._older_page),
            on_error=self._older_failed,
        )

    def _older_failed(self, exc: BaseException) -> None:
        self.loading_older = False
        self.tidings.report_error(exc)

    def _older_page(self, page: Page) -> None:
        scroller = self.ids.scroller
        items = self.ids.feed
        old_height = items.height
        bottom_offset = scroller.scroll_y * max(old_height - scroller.height, 0)
        known = {m.id for m in self.messages}
        older = [m for m in page.messages if m.id not in known]
        self.messages = older + self.messages
        self.before = page.before
        self._rebuild()

        def keep_place(_dt: float) -> None:
            new_range = items.height - scroller.height
            if new_range > 0:
                scroller.scroll_y = min(1.0, bottom_offset / new_range)
            self.loading_older = False
            if items.height <= scroller.height and self.before is not None:
                self.load_older()

        Clock.schedule_once(keep_place, 0)

    def show_message(self, message_id: uuid.UUID) -> None:
        """Bring a message into view and flash it (a tapped reply quote)."""
        row = self.rows.get(message_id)
        if row is None:
            self.open(self.conv_id, around=message_id)
            return
        self._scroll_to(row)
        row.highlight(True)
        Clock.schedule_once(lambda _dt: row.highlight(False), 2.0)

    def jump_to_latest(self) -> None:
        if self.at_latest:
            self.ids.scroller.scroll_y = 0
            self.show_jump = False
            self._mark_read()
            return
        self.open(self.conv_id)

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
