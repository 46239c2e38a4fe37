"""The message list of :class:`~tidings.app.screens.chat.ChatScreen` (a mixin): day
separators, the unread separator, bubbles and notes built from the messages in order, kept at
the bottom as messages arrive, older pages loaded when scrolled to the top without the view
jumping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.metrics import dp
from kivy.uix.widget import Widget

from tidings.app import timefmt
from tidings.app.bubbles import (
    DaySeparator,
    IdentityNote,
    MessageRow,
    PlaceholderRow,
    SystemNote,
)
from tidings.app.screens.safety import is_identity_line, is_undecryptable
from tidings.app.theme import rich
from tidings.client.types import Message, Page

if TYPE_CHECKING:
    from tidings.app.application import TidingsApp
    from tidings.app.unread import UnreadMarkers
    from tidings.client import Client

#: Messages per page when scrolling up.
PAGE_SIZE = 40
#: scroll_y above this (1 is the very top) loads the next older page.
LOAD_OLDER_AT = 0.97


class MessageFeed:
    """Mixed into :class:`~tidings.app.screens.chat.ChatScreen`."""

    if TYPE_CHECKING:
        ids: Any
        conv_id: str
        messages: list[Message]
        rows: dict[uuid.UUID, MessageRow]
        before: int | None
        at_latest: bool
        loading_older: bool
        show_jump: bool
        unread: UnreadMarkers
        _generation: int
        _spacer: Widget
        _keep_bottom: bool
        _mark_read: Callable[[], None]

        @property
        def tidings(self) -> TidingsApp: ...
        @property
        def client(self) -> Client: ...
        def open(self, conv_id: str, around: uuid.UUID | None = None) -> None: ...
        def _if_current(
            self, generation: int, handler: Callable[[Any], None]
        ) -> Callable[[Any], None]: ...

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
        from tidings.app.screens.chat import ChatScreen

        screen = self  # the rows are the chat screen's
        assert isinstance(screen, ChatScreen)
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
                widgets.append(PlaceholderRow(msg, screen))
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
                row = self.rows[msg.id] = MessageRow(msg, screen)
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
