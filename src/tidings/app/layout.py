"""Phone or desktop: one screen at a time below `WIDE_AT`, the chat list and the open chat side
by side (two panes) on a wider window, as Signal Desktop does. Resizing switches live.

In the two-pane layout the chat list screen leaves the screen manager for a pane of its own on
the left; the manager, on the right, shows `NoChatScreen` where the phone layout would show
the chat list. :meth:`PaneLayout.resolve` maps between the two names, so navigation code can
keep saying "chat_list". Before an account is attached (onboarding) the window stays single.
"""

from __future__ import annotations

from typing import Any

from kivy.core.window import Window
from kivy.event import EventDispatcher
from kivy.factory import Factory
from kivy.metrics import dp
from kivy.properties import BooleanProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.layout import Layout
from kivy.uix.relativelayout import RelativeLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from tidings.app.screens.base import AppScreen

#: A window at least this wide (dp) shows two panes.
WIDE_AT = 900
#: The chat list pane's share of a wide window, within these bounds (dp).
LIST_SHARE = 0.32
LIST_MIN, LIST_MAX = 320, 420
NO_CHAT = "no_chat"
CHAT_LIST = "chat_list"


class NoChatScreen(AppScreen):
    """The right pane while no chat is open."""


class PaneLayout(EventDispatcher):  # type: ignore[misc]  # kivy is untyped
    """Moves the chat list between the screen manager and a left pane."""

    wide = BooleanProperty(False)

    def __init__(self, root: Layout, manager: ScreenManager, chat_list: AppScreen) -> None:
        super().__init__()
        self.root = root
        self.manager = manager
        self.chat_list = chat_list
        self.enabled = False
        self.split = BoxLayout(orientation="horizontal")
        # relative layouts: the screens' KV rules draw at their own pos, which must stay (0, 0)
        self.left = RelativeLayout(size_hint_x=None)
        self.right = RelativeLayout()
        self.divider = Factory.PaneDivider()
        Window.bind(size=self._resized)

    def _resized(self, *_args: Any) -> None:
        self.update()

    def enable(self, enabled: bool = True) -> None:
        """Two panes are allowed once there is an account (not during onboarding)."""
        self.enabled = enabled
        self.update()

    def update(self) -> None:
        width = float(Window.width)
        self.left.width = min(max(width * LIST_SHARE, float(dp(LIST_MIN))), float(dp(LIST_MAX)))
        wide = self.enabled and width >= float(dp(WIDE_AT))
        if wide != self.wide:
            self.wide = wide
            self._two_panes() if wide else self._one_pane()

    def resolve(self, name: str) -> str:
        """The screen the manager shows for `name` in the current layout."""
        if self.wide and name == CHAT_LIST:
            return NO_CHAT
        if not self.wide and name == NO_CHAT:
            return CHAT_LIST
        return name

    def _switch(self, name: str) -> None:
        transition = self.manager.transition
        self.manager.transition = NoTransition()
        self.manager.current = name
        self.manager.transition = transition

    def _two_panes(self) -> None:
        manager, chat_list = self.manager, self.chat_list
        if manager.current == CHAT_LIST:
            self._switch(NO_CHAT)
        manager.remove_widget(chat_list)
        if chat_list.parent is not None:
            chat_list.parent.real_remove_widget(chat_list)
        self.root.remove_widget(manager)
        self.left.add_widget(chat_list)
        self.split.add_widget(self.left)
        self.split.add_widget(self.divider)
        self.right.add_widget(manager)
        self.split.add_widget(self.right)
        self.root.add_widget(self.split, index=len(self.root.children))
        chat_list.on_shown()

    def _one_pane(self) -> None:
        manager, chat_list = self.manager, self.chat_list
        self.left.remove_widget(chat_list)
        self.right.remove_widget(manager)
        self.split.clear_widgets()
        self.root.remove_widget(self.split)
        self.root.add_widget(manager, index=len(self.root.children))
        manager.add_widget(chat_list)
        if manager.current == NO_CHAT:
            self._switch(CHAT_LIST)
