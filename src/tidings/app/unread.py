"""The unread separator of a chat ("3 unread messages" above the first message from others I
had not read when I opened it) and the button that jumps to it.

Where the separator goes is the client core's answer (`Client.unread_marker`), asked when a
chat opens, before the chat marks what it shows as read; it stays where it is while the chat
is open (also after reading), as in other messengers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from tidings.app.theme import SYMBOL_FONT
from tidings.client.types import Message, UnreadMarker

if TYPE_CHECKING:
    import uuid

    from tidings.app.screens.chat import ChatScreen


def unread_text(count: int) -> str:
    return f"{count} unread message{'' if count == 1 else 's'}"


class UnreadSeparator(Label):  # type: ignore[misc]  # kivy is untyped
    """The line above the first unread message."""


class JumpToUnread(ButtonBehavior, Label):  # type: ignore[misc]
    """The pill at the top of the chat while the first unread message is out of sight."""

    shown = BooleanProperty(False)


class UnreadMarkers:
    """The separator and the jump button of one chat screen."""

    def __init__(self, chat: ChatScreen) -> None:
        self.chat = chat
        self.conv_id = ""
        self.marker: UnreadMarker | None = None
        self.separator = UnreadSeparator()
        self.button = JumpToUnread()
        self.button.bind(on_release=lambda _b: self.jump())
        chat.ids.scroller.parent.add_widget(self.button)
        # once scrolling and layout settle: is the separator in sight?
        self._check = Clock.create_trigger(self.update, 0.05)
        chat.ids.scroller.bind(scroll_y=self._check, height=self._check)
        chat.ids.feed.bind(height=self._check)

    @property
    def first_unread(self) -> uuid.UUID | None:
        marker = self.marker
        return marker.first_unread if marker is not None and marker.count else None

    def opening(self, conv_id: str, around: uuid.UUID | None) -> None:
        """The chat opens `conv_id` (around a message, or at its latest): ask where the
        separator goes. Jumping within the same chat keeps the marker it had."""
        if around is not None and conv_id == self.conv_id and self.marker is not None:
            return
        self.conv_id = conv_id
        self.marker = None
        self.button.shown = False
        if self.separator.parent is not None:
            self.separator.parent.remove_widget(self.separator)
        chat = self.chat
        chat.tidings.tasks.spawn(
            chat.client.unread_marker(conv_id), on_done=self._got, on_error=lambda _e: None
        )

    def _got(self, marker: UnreadMarker) -> None:
        if marker.conv_id != self.chat.conv_id or marker.conv_id != self.conv_id:
            return
        self.marker = marker
        if not marker.count:
            return
        self.separator.text = unread_text(marker.count)
        self.button.text = f"[font={SYMBOL_FONT}]\u2191[/font]  {unread_text(marker.count)}"
        if marker.first_unread in self.chat.rows and self.separator.parent is None:
            self.chat.refresh_items()
        self._check()

    def before(self, msg: Message) -> Widget | None:
        """The separator, when `msg` is the first unread message (for the item list)."""
        if msg.id != self.first_unread:
            return None
        if self.separator.parent is not None:
            self.separator.parent.remove_widget(self.separator)
        return self.separator

    def _separator_visible(self) -> bool:
        separator = self.separator
        if separator.parent is None:
            return False
        scroller = self.chat.ids.scroller
        _x, bottom = scroller.to_window(scroller.x, scroller.y)
        top = bottom + scroller.height
        _sx, sy = separator.to_window(separator.x, separator.y)
        return bool(bottom - separator.height < sy < top)

    def update(self, *_args: Any) -> None:
        """Show the jump button while the first unread message is out of sight."""
        self.button.shown = self.first_unread is not None and not self._separator_visible()

    def jump(self) -> None:
        """To the first unread message: scroll there, or open the chat around it."""
        first = self.first_unread
        if first is None:
            return
        self.button.shown = False
        if self.separator.parent is not None:
            self.chat.scroll_into_view(self.separator)
        else:
            self.chat.open(self.conv_id, around=first)
