"""Small widgets shared by the screens; their looks are in kv/widgets.kv."""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

from tidings.app.text.widgets import IntlLabel
from tidings.app.theme import avatar_colour, initials


class IconButton(ButtonBehavior, Label):  # type: ignore[misc]  # kivy is untyped
    """A round, borderless button showing one symbol."""

    tint = ColorProperty([0, 0, 0, 0])


class SearchIcon(ButtonBehavior, Widget):  # type: ignore[misc]
    """A magnifying glass drawn with lines (no font has a good one)."""

    tint = ColorProperty([0, 0, 0, 1])


class PrimaryButton(ButtonBehavior, Label):  # type: ignore[misc]
    """The filled call-to-action button."""

    enabled = BooleanProperty(True)
    danger = BooleanProperty(False)

    def on_touch_down(self, touch: Any) -> bool:
        if not self.enabled:
            return False
        result: bool = super().on_touch_down(touch)
        return result


class FlatButton(ButtonBehavior, Label):  # type: ignore[misc]
    """A text-only button (links, secondary actions)."""


class Avatar(IntlLabel):
    """A round picture (`photo`, a texture: tidings.app.avatars), else a coloured disc with
    the initials of a name (any script: drawn by the international text engine), or a
    symbol (`icon`, in the symbol font)."""

    name = StringProperty("")
    icon = StringProperty("")
    disc = ListProperty([0.5, 0.5, 0.5, 1])
    photo = ObjectProperty(None, allownone=True)

    def on_name(self, _instance: Any, value: str) -> None:
        self._relabel()
        self.disc = avatar_colour(value)

    def on_icon(self, _instance: Any, _value: str) -> None:
        self._relabel()

    def on_photo(self, _instance: Any, _value: Any) -> None:
        self._relabel()

    def _relabel(self) -> None:
        self.text = "" if self.photo is not None else (self.icon or initials(self.name))

    def texture_update(self, *args: Any) -> None:
        if self.icon:  # the symbol font: Kivy's own text provider
            Label.texture_update(self, *args)
        else:
            super().texture_update(*args)


class Badge(Label):  # type: ignore[misc]
    """The unread counter pill."""

    count = NumericProperty(0)


class Field(TextInput):  # type: ignore[misc]
    """A single-line rounded input."""


class ConnectionBanner(Label):  # type: ignore[misc]
    """A thin strip under the top bar while the client is not online."""

    shown = BooleanProperty(False)


class TopBar(BoxLayout):  # type: ignore[misc]
    """The bar at the top of every screen (children are added in each screen's KV)."""


class Chip(ButtonBehavior, IntlLabel):  # type: ignore[misc]
    """A small rounded label, e.g. a reaction with its count or a picked group member (drawn
    by the international text engine: colour emoji, any script)."""

    selected = BooleanProperty(False)


class Toast(Label):  # type: ignore[misc]
    """A short message floating above the content; hides itself after a few seconds."""

    shown = BooleanProperty(False)

    def show(self, text: str, seconds: float = 3.5) -> None:
        self.text = text
        self.shown = True
        Clock.unschedule(self._hide)
        Clock.schedule_once(self._hide, seconds)

    def _hide(self, _dt: float) -> None:
        self.shown = False


class TappableBox(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A box that reacts to taps as a whole (list rows, headers)."""
