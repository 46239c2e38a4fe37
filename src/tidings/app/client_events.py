"""The part of :class:`~tidings.app.application.TidingsApp` that shows what the client reports
(a mixin): each client event routed to the screens it concerns, a contact's changed safety
number, and the connection line ("Online", "Offline \u2014 retrying in 5 s", ...)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from tidings.app import media_bubbles
from tidings.app.screens.channel_info import ChannelInfoScreen
from tidings.app.screens.chat import ChatScreen
from tidings.app.screens.chat_list import ChatListScreen
from tidings.app.screens.group_info import GroupInfoScreen
from tidings.app.screens.safety import SafetyNumberScreen
from tidings.client.types import (
    ClientEvent,
    Connection,
    ConnectionChanged,
    ConnectionState,
    ConversationUpdated,
    IdentityChanged,
    MessageAdded,
    MessageRemoved,
    MessageUpdated,
    Notify,
    Synced,
    TransferProgress,
    TypingChanged,
)

if TYPE_CHECKING:
    from typing import Any

    from tidings.app.local_notify import LocalNotifier
    from tidings.app.screens.base import AppScreen
    from tidings.app.screens.notifications import NotificationsScreen
    from tidings.app.tasks import Tasks
    from tidings.app.typing_indicator import TypingState

log = logging.getLogger(__name__)


class ClientEvents:
    """Mixed into :class:`~tidings.app.application.TidingsApp`."""

    if TYPE_CHECKING:
        tasks: Tasks
        manager: Any
        identity_changes: dict[str, bool]
        local_notifier: LocalNotifier
        typing: TypingState
        connection_state: str
        connection_text: str
        _closed_reason: str
        _retry_deadline: float | None

        def screen(self, name: str) -> AppScreen: ...
        def notify(self, text: str) -> None: ...
        def _notifications(self) -> NotificationsScreen: ...

    async def _follow(self, events: AsyncIterator[ClientEvent]) -> None:
        async for event in events:
            try:
                self.dispatch_client_event(event)
            except Exception:
                log.exception("showing %r failed", event)

    def dispatch_client_event(self, event: ClientEvent) -> None:
        chat_list = self.screen("chat_list")
        chat = self.screen("chat")
        group_info = self.screen("group_info")
        assert isinstance(chat_list, ChatListScreen)
        assert isinstance(chat, ChatScreen)
        assert isinstance(group_info, GroupInfoScreen)
        if isinstance(event, ConnectionChanged):
            self._set_connection(event.connection)
        elif isinstance(event, MessageAdded):
            chat_list.on_message(event.message)
            chat.on_message_added(event.message)
        elif isinstance(event, MessageUpdated):
            chat_list.on_message(event.message)
            chat.on_message_updated(event.message)
        elif isinstance(event, MessageRemoved):
            chat.on_message_removed(event.conv_id, event.message_id)
        elif isinstance(event, ConversationUpdated):
            chat_list.on_conversation(event.conversation)
            chat.on_conversation(event.conversation)
            group_info.on_conversation(event.conversation)
            channel_info = self.screen("channel_info")
            if isinstance(channel_info, ChannelInfoScreen):
                channel_info.on_conversation(event.conversation)
            self._notifications().on_conversation(event.conversation)
        elif isinstance(event, Synced):
            self.tasks.spawn(chat_list.reload())
        elif isinstance(event, IdentityChanged):
            self._identity_changed(event, chat)
        elif isinstance(event, Notify):
            self.local_notifier.on_notify(event)
        elif isinstance(event, TransferProgress):
            media_bubbles.on_progress(event)
        elif isinstance(event, TypingChanged):
            self.typing.on_event(event)

    def _identity_changed(self, event: IdentityChanged, chat: ChatScreen) -> None:
        """A contact's safety number changed: remember it (the chat shows sending as paused
        when they had been verified), tell the user and the screens that show it."""
        name = event.username
        self.identity_changes[name] = self.identity_changes.get(name, False) or event.was_verified
        chat.on_identity_changed(name)
        safety = self.screen("safety")
        assert isinstance(safety, SafetyNumberScreen)
        safety.on_identity_changed(name, self.identity_changes[name])
        current = self.manager.current
        if (current == "chat" and chat.peer() == name) or (
            current == "safety" and safety.username == name
        ):
            return  # the screen itself says so
        if event.was_verified:
            self.notify(f"Your safety number with {name} changed: sending to {name} is paused")
        else:
            self.notify(f"Your safety number with {name} changed")

    def identity_verified(self, username: str) -> None:
        """The user verified `username` (again): sending to them resumes."""
        self.identity_changes.pop(username, None)
        chat = self.screen("chat")
        if isinstance(chat, ChatScreen):
            chat.on_identity_changed(username)

    # ------------------------------------------------------------------ connection state

    def _set_connection(self, connection: Connection) -> None:
        self.connection_state = connection.state.value
        self._closed_reason = connection.last_error or "the connection ended"
        if connection.state is ConnectionState.OFFLINE and connection.retry_in is not None:
            self._retry_deadline = time.monotonic() + connection.retry_in
        else:
            self._retry_deadline = None
        self._render_connection()

    def _tick_connection(self, _dt: float) -> None:
        if self._retry_deadline is not None:
            self._render_connection()

    def _render_connection(self) -> None:
        state = self.connection_state
        if state == ConnectionState.ONLINE.value:
            self.connection_text = "Online"
        elif state == ConnectionState.CONNECTING.value:
            self.connection_text = "Connecting\u2026"
        elif state == ConnectionState.CLOSED.value:
            # ended for good: the device was removed, another connection took over, or an
            # update is needed (the core's reason says which); no retry countdown
            self.connection_text = f"Disconnected \u2014 {self._closed_reason}"
        elif self._retry_deadline is not None:
            left = round(self._retry_deadline - time.monotonic())
            self.connection_text = (
                f"Offline \u2014 retrying in {left} s"
                if left >= 1
                else "Offline \u2014 retrying now\u2026"
            )
        else:
            self.connection_text = "Offline"
