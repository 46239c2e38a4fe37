"""Mentions in the app: the ``@`` autocomplete above the composer, and how a message that
mentions me looks (a tinted pill behind each ``@me`` in the text, an outline round the bubble
and an ``@`` before its time).

Which usernames a text mentions, and whether a message mentions me, is the client core's
answer (``tidings.client.push``: ``MENTION``, ``mention_spans``, ``Message.mentions_me``);
this module only draws it and helps typing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.graphics import Color, Line, RoundedRectangle
from kivy.metrics import dp
from kivy.properties import StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from tidings.app.text.layout import run_width
from tidings.app.text.widgets import IntlLabel
from tidings.client.push import MENTION
from tidings.client.types import Member, Message

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen

#: ``@`` and the start of a username right before the cursor (not inside a word or address)
TYPING = re.compile(r"(?<![\w@])@([a-z0-9_.]{0,32})$", re.IGNORECASE)
#: at most this many suggestions at once
MAX_SUGGESTIONS = 5


def typed_mention(text: str, cursor: int) -> tuple[int, str] | None:
    """(where the ``@`` is, what follows it) when the cursor ends an ``@name`` being typed."""
    match = TYPING.search(text[:cursor])
    if match is None:
        return None
    return match.start(), match.group(1)


def suggestions(members: Sequence[Member], prefix: str, me: str) -> list[Member]:
    """Members (never me) whose username starts with ``prefix``, then those containing it."""
    wanted = prefix.lower()
    others = sorted((m for m in members if m.account_id != me), key=lambda m: m.username)
    first = [m for m in others if m.username.lower().startswith(wanted)]
    then = [m for m in others if wanted in m.username.lower() and m not in first]
    return (first + then)[:MAX_SUGGESTIONS]


def insert_mention(text: str, cursor: int, username: str) -> tuple[str, int]:
    """The text with the ``@name`` before the cursor completed to ``@username ``, and where
    the cursor goes."""
    typed = typed_mention(text, cursor)
    start = typed[0] if typed is not None else cursor
    rest = text[cursor:]
    inserted = f"@{username}" + ("" if rest.startswith(" ") else " ")
    return text[:start] + inserted + rest, start + len(inserted) + (1 if rest[:1] == " " else 0)


class MentionRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """One suggestion: avatar, username."""

    username = StringProperty("")


class MentionList(BoxLayout):  # type: ignore[misc]
    """The suggestions, floating over the bottom of the chat, right above the composer."""


class MentionAutocomplete:
    """Follows the composer of a chat: typing ``@`` and letters lists the chat's members
    that match; choosing one inserts ``@username ``."""

    def __init__(self, chat: ChatScreen) -> None:
        self.chat = chat
        self.composer = chat.ids.composer
        self.panel = MentionList()
        self.shown: list[Member] = []
        self.composer.bind(text=self._changed, cursor=self._changed)

    def _changed(self, *_args: Any) -> None:
        conv = self.chat.conversation
        typed = typed_mention(self.composer.text, self.composer.cursor_index())
        if conv is None or typed is None or not self.chat.member:
            self.show([])
            return
        me = self.chat.client.account.account_id
        self.show(suggestions(conv.members, typed[1], me))

    def show(self, members: list[Member]) -> None:
        if [m.username for m in members] == [m.username for m in self.shown]:
            return
        self.shown = members
        panel = self.panel
        panel.clear_widgets()
        for member in members:
            row = MentionRow(username=member.username)
            row.bind(on_release=self._chooser(member.username))
            panel.add_widget(row)
        host = self.chat.ids.scroller.parent  # the layer over the feed
        if members and panel.parent is None:
            host.add_widget(panel)
        elif not members and panel.parent is not None:
            panel.parent.remove_widget(panel)

    def _chooser(self, username: str) -> Callable[[Any], None]:
        def choose(_row: Any) -> None:
            self.choose(username)

        return choose

    def choose(self, username: str) -> None:
        composer = self.composer
        text, cursor = insert_mention(composer.text, composer.cursor_index(), username)
        composer.text = text
        composer.cursor = composer.get_cursor_from_index(cursor)
        self.show([])
        Clock.schedule_once(lambda _dt: setattr(composer, "focus", True), 0)


# ---------------------------------------------------------------------- how a mention looks


def mention_boxes(label: IntlLabel, usernames: set[str]) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) of every ``@username`` of ``usernames`` drawn by ``label``,
    relative to its bottom-left corner. Mentions in right-to-left runs, or split over two
    runs, are left out (they are still written, only not tinted)."""
    lay = label.text_layout
    if lay is None or not usernames:
        return []
    size = lay.style.size
    boxes: list[tuple[float, float, float, float]] = []
    top = 0
    for line in lay.lines:
        height = line.ascent + line.descent
        for run in line.runs:
            if run.rtl or run.emoji:
                continue
            for match in MENTION.finditer(run.text):
                if match.group(1).lower() not in usernames:
                    continue
                x = run.x + run_width(run.text[: match.start()], run.font, size, False)
                width = run_width(match.group(0), run.font, size, False)
                boxes.append((x, label.height - top - height, width, float(height)))
        top += height
    return boxes


def decorate(label: IntlLabel, bubble: Widget, message: Message, me: str, accent: Any) -> None:
    """Tint each ``@me`` in ``label`` (the body of ``message``) and outline the bubble of a
    message that mentions me."""
    if message.is_own:
        return
    pad = float(dp(2))
    boxes = mention_boxes(label, {me.lower()})
    if boxes:
        with label.canvas.before:
            Color(*accent[:3], 0.22)
            pills = [RoundedRectangle(radius=[dp(5)]) for _ in boxes]

        def place(*_args: Any) -> None:
            for pill, (x, y, w, h) in zip(pills, boxes, strict=True):
                pill.pos = (label.x + x - pad, label.y + y)
                pill.size = (w + 2 * pad, h)

        label.bind(pos=place)
        place()
    if message.mentions_me:
        with bubble.canvas.after:
            Color(*accent[:3], 0.9)
            outline = Line(width=dp(1.3))

        def frame(*_args: Any) -> None:
            r = float(dp(18))
            outline.rounded_rectangle = (
                bubble.x,
                bubble.y,
                bubble.width,
                bubble.height,
                r,
                r,
                r,
                float(dp(4)),
            )

        bubble.bind(pos=frame, size=frame)
        frame()


def meta_mark(message: Message) -> str:
    """Markup put before the time of a message that mentions me: a small bold ``@``."""
    return "[b]@[/b]  " if message.mentions_me and not message.is_own else ""
