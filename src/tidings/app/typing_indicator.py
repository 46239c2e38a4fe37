"""Who is typing where: `TypingChanged` events of the client core (which throttles what it
sends, lets a lost "stopped" lapse and honours the typing-indicators setting) shown in the
chat's header ("bob is typing…") and its chat-list row ("typing…")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.app.screens.chat import ChatScreen
from tidings.app.screens.chat_list import ChatListScreen
from tidings.client.types import TypingChanged

if TYPE_CHECKING:
    from tidings.app.application import TidingsApp

ELLIPSIS = "\u2026"


def typing_text(names: list[str]) -> str:
    """ "bob is typing…", "bob and carol are typing…", "bob, carol and 2 more are typing…"."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing{ELLIPSIS}"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing{ELLIPSIS}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more are typing{ELLIPSIS}"


class TypingState:
    """The typing people per conversation (account id -> display name), in arrival order."""

    def __init__(self, app: TidingsApp) -> None:
        self.app = app
        self._typing: dict[str, dict[str, str]] = {}

    def names(self, conv_id: str) -> list[str]:
        return list(self._typing.get(conv_id, {}).values())

    def text(self, conv_id: str) -> str:
        return typing_text(self.names(conv_id))

    def on_event(self, event: TypingChanged) -> None:
        people = self._typing.setdefault(event.conv_id, {})
        if event.typing:
            people[event.account_id] = event.name
        else:
            people.pop(event.account_id, None)
        if not people:
            del self._typing[event.conv_id]
        self._show(event.conv_id)

    def _show(self, conv_id: str) -> None:
        chat_list = self.app.screen("chat_list")
        if isinstance(chat_list, ChatListScreen):
            row = chat_list.row(conv_id)
            if row is not None:
                row.typing = conv_id in self._typing
        chat = self.app.screen("chat")
        if isinstance(chat, ChatScreen) and chat.conv_id == conv_id:
            chat.typing_text = self.text(conv_id)
