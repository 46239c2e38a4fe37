"""The widgets of one message in a chat: the bubble with its sender, quote, text, time and
status ticks, the reactions under it, day separators, system notes (the one about a changed
safety number opens it) and the muted placeholder of a message that could not be decrypted.

A `MessageRow` shows a `Message` as the client core reports it and hands what the user does to
its `ChatScreen` (retry a failed message on tap, open the actions on a long press, jump to a
quoted message)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.metrics import dp
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget
from kivy.utils import get_hex_from_color

from tidings.app import channels, media_bubbles, mentions, timefmt
from tidings.app.screens.base import running_app
from tidings.app.text.widgets import IntlLabel, IntlWrapLabel
from tidings.app.theme import (
    SYMBOL_FONT,
    TICK_DOUBLE,
    TICK_SENDING,
    TICK_SENT,
    avatar_colour,
    rich,
)
from tidings.app.widgets import Chip
from tidings.client.types import Message, MessageStatus

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen

#: How long a press must last to count as a long press.
LONG_PRESS_SECONDS = 0.45
#: "Not sent" on an own (primary-coloured) bubble, readable in both themes.
FAILED_ON_OWN = "#ffe08a"


class WrapLabel(Label):  # type: ignore[misc]  # kivy is untyped
    """A label as wide as its text, wrapping at `max_width`."""

    max_width = NumericProperty(dp(260))

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("size_hint", (None, None))
        super().__init__(**kwargs)
        self.bind(text=self._fit, max_width=self._fit, font_size=self._fit)
        self._fit()

    def _fit(self, *_args: Any) -> None:
        self.text_size = (None, None)
        self.texture_update()
        if self.texture_size[0] > self.max_width:
            self.text_size = (self.max_width, None)
            self.texture_update()
        self.size = self.texture_size


class MessageBubble(BoxLayout):  # type: ignore[misc]
    """The rounded frame of one message."""

    own = BooleanProperty(False)
    highlighted = BooleanProperty(False)


class QuoteBox(BoxLayout):  # type: ignore[misc]
    """The quoted message inside a reply bubble."""

    own = BooleanProperty(False)


class DaySeparator(Label):  # type: ignore[misc]
    """ "Today", "Yesterday", a date: centred between days."""


class SystemNote(IntlLabel):
    """A system message ("alice added bob"), centred; display names can be in any script."""


class IdentityNote(ButtonBehavior, Label):  # type: ignore[misc]
    """The system line "Your safety number with bob changed": a tap opens the safety number."""

    username = StringProperty("")

    def on_release(self) -> None:
        if self.username:
            running_app().open_safety_number(self.username)


class PlaceholderBubble(BoxLayout):  # type: ignore[misc]
    """The muted frame of a message that could not be decrypted."""

    own = BooleanProperty(False)


class PlaceholderRow(BoxLayout):  # type: ignore[misc]
    """A message that could not be decrypted: a muted bubble in its place."""

    def __init__(self, message: Message, chat: ChatScreen, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        theme = running_app().theme
        inner = max(float(dp(160)), float(chat.width or dp(390)) * 0.78 - float(dp(24)))
        bubble = self.bubble = PlaceholderBubble(own=message.is_own)
        parts: list[WrapLabel] = []
        if chat.is_group and not message.is_own:
            parts.append(
                WrapLabel(
                    text=rich(message.sender_name),
                    markup=True,
                    bold=True,
                    font_size=dp(13),
                    color=theme.text_muted,
                    max_width=inner,
                )
            )
        self.body = WrapLabel(
            text=f"[font={SYMBOL_FONT}]\u2298[/font]  [i]{rich(message.body)}[/i]",
            markup=True,
            font_size=dp(14.5),
            color=theme.text_muted,
            max_width=inner,
        )
        parts.append(self.body)
        stamp = WrapLabel(
            text=timefmt.clock(message.created_at),
            font_size=dp(11.5),
            color=theme.text_muted,
            max_width=inner,
        )
        stamp.pos_hint = {"right": 1}
        parts.append(stamp)
        width = max(p.width for p in parts)
        for part in parts:
            bubble.add_widget(part)
        bubble.width = width + bubble.padding[0] + bubble.padding[2]
        line = BoxLayout(size_hint_y=None, height=bubble.height)
        bubble.bind(height=line.setter("height"))
        if message.is_own:
            line.add_widget(Widget())
            line.add_widget(bubble)
        else:
            line.add_widget(bubble)
            line.add_widget(Widget())
        self.add_widget(line)


class MessageRow(BoxLayout):  # type: ignore[misc]
    """A message: its bubble aligned left or right, reactions underneath."""

    message: Message
    own = BooleanProperty(False)

    def __init__(self, message: Message, chat: ChatScreen, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat
        self.bubble: MessageBubble | None = None
        #: the bubble width limit this row was laid out for
        self.built_for = 0.0
        self._press: Any = None
        self._long_pressed = False
        self.show(message)

    @property
    def max_bubble_width(self) -> float:
        width = float(self.chat.width or dp(390))
        return max(float(dp(160)), width * 0.78 - float(dp(24)))

    def show(self, message: Message) -> None:
        self.message = message
        self.own = message.is_own
        theme = running_app().theme
        highlighted = self.bubble.highlighted if self.bubble is not None else False
        self.clear_widgets()
        inner = self.max_bubble_width
        self.built_for = inner
        bubble = MessageBubble(own=message.is_own, highlighted=highlighted)
        self.bubble = bubble
        text_colour = theme.bubble_own_text if message.is_own else theme.bubble_other_text
        muted = theme.bubble_own_muted if message.is_own else theme.bubble_other_muted
        parts: list[Widget] = []
        if self.chat.is_group and not message.is_own:
            parts.append(
                IntlWrapLabel(
                    text=message.sender_name,
                    bold=True,
                    font_size=dp(13),
                    color=avatar_colour(message.sender_name),
                    max_width=inner,
                )
            )
        self.quote: QuoteBox | None = None
        if message.reply_to is not None:
            quote = self.quote = QuoteBox(own=message.is_own)
            quote.add_widget(
                IntlWrapLabel(
                    text=message.reply_preview or "Original message not available",
                    font_size=dp(13),
                    color=muted,
                    max_width=inner - dp(14),
                    max_lines=2,
                    shorten=True,
                    shorten_from="right",
                )
            )
            parts.append(quote)
        if message.attachments:  # photos, voice notes, files (media_bubbles.py)
            parts.append(media_bubbles.media_block(message, self.chat, inner))
        body = IntlWrapLabel(
            text=message.body,
            font_size=dp(15.5),
            # deleted for everyone: "This message was deleted", muted
            italic=message.deleted,
            color=muted if message.deleted else text_colour,
            max_width=inner,
        )
        self.body = body
        me = running_app().require_client().account.username
        mentions.decorate(body, bubble, message, me, theme.primary)
        if message.body or not message.attachments:  # a caption, if any
            parts.append(body)
        meta = WrapLabel(
            text=self._meta_markup(message, muted),
            markup=True,
            font_size=dp(11.5),
            color=muted,
            max_width=inner,
        )
        self.meta = meta
        parts.append(meta)
        content_width = max(_natural_width(p) for p in parts)
        for part in parts:
            if isinstance(part, QuoteBox):
                part.width = content_width
            bubble.add_widget(part)
        meta.size_hint_x = None
        meta.pos_hint = {"right": 1}
        bubble.width = content_width + bubble.padding[0] + bubble.padding[2]
        line = BoxLayout(size_hint_y=None, height=bubble.height)
        bubble.bind(height=line.setter("height"))
        if message.is_own:
            line.add_widget(Widget())
            line.add_widget(bubble)
        else:
            line.add_widget(bubble)
            line.add_widget(Widget())
        self.add_widget(line)
        channels.mark_unverified(self, bubble, message)  # a channel post that did not verify
        if message.reactions:
            self.add_widget(self._reaction_line(message))

    def highlight(self, on: bool) -> None:
        """Mark the bubble (the message a search hit opened)."""
        if self.bubble is not None:
            self.bubble.highlighted = on

    def _meta_markup(self, message: Message, muted: list[float]) -> str:
        stamp = timefmt.clock(message.created_at)
        if message.edited and not message.deleted:
            stamp = f"edited  {stamp}"
        if not message.is_own:
            return mentions.meta_mark(message) + stamp
        theme = running_app().theme
        if message.status is MessageStatus.FAILED:
            return f"[color={FAILED_ON_OWN}][b]Not sent \u2014 tap to retry[/b][/color]  {stamp}"
        tick = {
            MessageStatus.SENDING: TICK_SENDING,
            MessageStatus.SENT: TICK_SENT,
            MessageStatus.DELIVERED: TICK_DOUBLE,
            MessageStatus.READ: TICK_DOUBLE,
        }[message.status]
        read = message.status is MessageStatus.READ
        colour = get_hex_from_color(theme.tick_read if read else muted)
        return (
            f"{stamp}  [font={SYMBOL_FONT}][size=14sp][color={colour}]{tick}[/color][/size][/font]"
        )

    def _reaction_line(self, message: Message) -> BoxLayout:
        me = running_app().require_client().account.username
        line = BoxLayout(size_hint_y=None, height=dp(32), spacing=dp(4), padding=[0, dp(4), 0, 0])
        chips: list[Widget] = []
        for emoji, users in message.reactions:
            mine = me in users
            label = f"{emoji} {len(users)}"
            chip = Chip(text=label, selected=mine)
            chip.bind(on_release=self._reaction_toggler(emoji, mine))
            chips.append(chip)
        if message.is_own:
            line.add_widget(Widget())
        for chip in chips:
            line.add_widget(chip)
        if not message.is_own:
            line.add_widget(Widget())
        return line

    def _reaction_toggler(self, emoji: str, mine: bool) -> Callable[[Any], None]:
        def toggle(_chip: Any) -> None:
            self.chat.react(self.message, emoji, remove=mine)

        return toggle

    # touches: a tap retries a failed message, a long press opens the actions
    def on_touch_down(self, touch: Any) -> bool:
        # BoxLayouts do not transform: the bubble's parent shares our coordinates
        if self.bubble is None or not self.bubble.collide_point(*touch.pos):
            return bool(super().on_touch_down(touch))
        if super().on_touch_down(touch):
            return True
        if getattr(touch, "button", None) == "right":  # a right click on a desktop
            self._long_press()
            return True
        self._long_pressed = False
        self._press = Clock.schedule_once(lambda _dt: self._long_press(), LONG_PRESS_SECONDS)
        touch.ud[self] = touch.pos
        return False

    def on_touch_move(self, touch: Any) -> bool:
        start = touch.ud.get(self)
        moved = start is not None and (
            abs(touch.pos[0] - start[0]) > dp(12) or abs(touch.pos[1] - start[1]) > dp(12)
        )
        if moved and self._press is not None:
            self._press.cancel()
            self._press = None
        return bool(super().on_touch_move(touch))

    def on_touch_up(self, touch: Any) -> bool:
        if self in touch.ud and self._press is not None:
            self._press.cancel()
            self._press = None
            if not self._long_pressed and self.message.status is MessageStatus.FAILED:
                self.chat.retry(self.message)
                return True
            quoted = self.message.reply_to
            if (
                not self._long_pressed
                and quoted is not None
                and self.quote is not None
                and self.quote.collide_point(*touch.pos)
            ):
                self.chat.show_message(quoted)
                return True
        return bool(super().on_touch_up(touch))

    def _long_press(self) -> None:
        self._press = None
        self._long_pressed = True
        self.chat.show_actions(self.message)


def _natural_width(part: Widget) -> float:
    if isinstance(part, QuoteBox):
        label = part.children[0]
        width: float = label.width + part.padding[0] + part.padding[2]
        return width
    natural: float = part.width
    return natural
