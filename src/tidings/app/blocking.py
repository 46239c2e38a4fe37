"""Blocking from a direct chat: its header menu (contact info, block/unblock), the
confirmation (the other person is not told), and the banner that takes the composer's place
while they are blocked. What blocking does is the client core's (``Client.block``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kivy.properties import StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView

from tidings.app.screens.base import running_app
from tidings.app.theme import rich

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen


class BlockedBanner(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """ "You blocked bob" with Unblock, instead of the composer (kv/profile.kv)."""

    name = StringProperty("")
    username = StringProperty("")

    def unblock(self) -> None:
        unblock(self.username)


class ConfirmBlock(ModalView):  # type: ignore[misc]
    """Block bob? They won't be told."""

    title = StringProperty("")
    text = StringProperty("")

    def __init__(self, on_confirm: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_confirm = on_confirm

    def confirm(self) -> None:
        self.dismiss()
        self.on_confirm()


class ChatMenu(ModalView):  # type: ignore[misc]
    """The header menu of a direct chat."""

    name = StringProperty("")
    blocked_label = StringProperty("")

    def __init__(self, chat: ChatScreen, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat

    def info(self) -> None:
        self.dismiss()
        self.chat.open_info()

    def toggle_block(self) -> None:
        self.dismiss()
        username = self.chat.peer()
        if username is None:
            return
        if self.chat.blocked:
            unblock(username)
        else:
            confirm_block(username, self.chat.title)


def open_menu(chat: ChatScreen) -> ChatMenu | None:
    """The header's ⋮: a group shows its members; a direct chat, this menu."""
    if chat.peer() is None:
        chat.open_info()
        return None
    menu = ChatMenu(chat, name=chat.title)
    menu.blocked_label = f"Unblock {chat.title}" if chat.blocked else f"Block {chat.title}"
    menu.open(animation=False)
    return menu


def confirm_block(username: str, name: str) -> ConfirmBlock:
    sheet = ConfirmBlock(
        lambda: block(username),
        title=f"Block {rich(name)}?",
        text=(
            f"{rich(name)} won't be told. You won't get their messages, they won't see when "
            "you read theirs, and they can no longer see your profile."
        ),
    )
    sheet.open(animation=False)
    return sheet


def block(username: str) -> None:
    app = running_app()
    app.tasks.spawn(app.require_client().block(username), on_done=lambda _r: _changed())


def unblock(username: str) -> None:
    app = running_app()
    app.tasks.spawn(app.require_client().unblock(username), on_done=lambda _r: _changed())


def _changed() -> None:
    """Block or unblock done: the open chat and the settings' list show it."""
    from tidings.app.privacy import PrivacySection
    from tidings.app.screens.chat import ChatScreen

    app = running_app()
    chat = app.screen("chat")
    if isinstance(chat, ChatScreen):
        chat.refresh_blocked()
    section = app.screen("settings").ids.get("privacy")
    if isinstance(section, PrivacySection):
        section.refresh()


def show_blocked(chat: ChatScreen, blocked: bool) -> None:
    """Swap the composer and the blocked banner of `chat`."""
    composer = chat.ids.composer_bar.__self__
    banner: BlockedBanner | None = getattr(chat, "_blocked_banner", None)
    if banner is None:
        banner = BlockedBanner()
        chat._blocked_banner = banner
    banner.name = chat.title
    banner.username = chat.peer() or ""
    column = composer.parent or banner.parent
    if column is None:
        return
    shown, hidden = (banner, composer) if blocked else (composer, banner)
    if blocked:
        chat.ids.composer.focus = False
    if hidden.parent is not None:
        column.remove_widget(hidden)
    if shown.parent is None:
        column.add_widget(shown, index=0)
