"""Full-text search over the local store; a hit opens its chat at that message."""

from __future__ import annotations

import re
from typing import Any

from kivy.clock import Clock
from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.utils import get_hex_from_color

from tidings.app import timefmt
from tidings.app.screens.base import AppScreen, running_app
from tidings.app.screens.chat_list import ChatListScreen
from tidings.app.theme import rich
from tidings.client.types import SearchHit

#: A match inside a snippet, as the client marks it: [word]
_MATCH = re.compile(r"\[([^\]]*)\]")


def snippet_markup(snippet: str, colour: list[float]) -> str:
    """The snippet with its [matches] in bold and in `colour`."""
    hexcolour = get_hex_from_color(colour)
    out: list[str] = []
    pos = 0
    for match in _MATCH.finditer(snippet):
        out.append(rich(snippet[pos : match.start()]))
        out.append(f"[b][color={hexcolour}]{rich(match.group(1))}[/color][/b]")
        pos = match.end()
    out.append(rich(snippet[pos:]))
    return "".join(out)


class SearchResult(ButtonBehavior, BoxLayout):  # type: ignore[misc]  # kivy is untyped
    hit = ObjectProperty(None)
    title = StringProperty("")
    who = StringProperty("")
    stamp = StringProperty("")
    snippet = StringProperty("")

    def on_release(self) -> None:
        hit: SearchHit = self.hit
        running_app().open_chat(hit.message.conv_id, around=hit.message.id)


class SearchScreen(AppScreen):
    status = StringProperty("Search your messages")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._trigger = Clock.create_trigger(lambda _dt: self.search(), 0.3)
        self.hits: list[SearchHit] = []

    def on_shown(self) -> None:
        Clock.schedule_once(lambda _dt: setattr(self.ids.query, "focus", True), 0.2)

    def restyle(self) -> None:
        if self.hits:
            self.search()

    def query_changed(self) -> None:
        self._trigger()

    def search(self) -> None:
        query = self.ids.query.text.strip()
        if not query:
            self._show([], "Search your messages")
            return
        self.status = "Searching\u2026"
        self.tidings.tasks.spawn(
            self.client.search(query),
            on_done=lambda hits: self._show_if_current(query, hits),
        )

    def _show_if_current(self, query: str, hits: list[SearchHit]) -> None:
        if self.ids.query.text.strip() == query:
            self._show(hits, "" if hits else f"No messages match \u201c{query}\u201d")

    def _show(self, hits: list[SearchHit], status: str) -> None:
        self.hits = hits
        self.status = status
        box = self.ids.results
        box.clear_widgets()
        chat_list = self.tidings.screen("chat_list")
        theme = self.tidings.theme
        for hit in hits:
            msg = hit.message
            title = chat_list.title_of(msg.conv_id) if isinstance(chat_list, ChatListScreen) else ""
            box.add_widget(
                SearchResult(
                    hit=hit,
                    title=title,
                    who="You" if msg.is_own else rich(msg.sender_name),
                    stamp=timefmt.list_stamp(msg.created_at),
                    snippet=snippet_markup(hit.snippet, theme.primary),
                )
            )
