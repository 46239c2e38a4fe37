"""The message menu of a channel post (a long press or a right click on it).

A channel's log takes signed posts from its admins and nothing else: no reactions, replies,
edits or deletions for everyone (the client core refuses them with ``not_supported``). So a
post offers Copy text and Info to everyone and Delete for me once it is in the log (deleting
one still being posted would not stop it); the author, while an admin, gets Retry sending for
a post the server refused (the same signed post again: ``Client.retry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.app.message_menu import ChoiceSheet, MessageActions
from tidings.app.screens.base import running_app
from tidings.client.types import Message, MessageStatus

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen


def actions_for(chat: ChatScreen, message: Message) -> MessageActions:
    """The menu of `message` in `chat`: a channel post's, or any other message's."""
    return (ChannelPostActions if chat.is_channel else MessageActions)(chat, message)


class ChannelPostActions(MessageActions):
    """The sheet of one channel post; it looks like any message's (kv/chat.kv)."""

    def build(self) -> None:
        message = self.message
        self.ids.reactions.height = 0
        actions = self.ids.actions
        channel = running_app().require_client().channel(message.conv_id)
        admin = channel is not None and channel.is_admin
        if message.status is MessageStatus.FAILED and message.is_own and admin:
            actions.add_widget(self._action("Retry sending", self._retry))
        if message.kind == "text" and not message.deleted:
            actions.add_widget(self._action("Copy text", self._copy))
            actions.add_widget(self._action("Info", self._info))
        if message.status is not MessageStatus.SENDING:
            actions.add_widget(self._action("Delete", self._delete, danger=True))

    def _delete(self) -> None:
        self.dismiss()
        message = self.message
        app = running_app()
        client = app.require_client()

        def for_me() -> None:
            app.tasks.spawn(client.delete_for_me(message.id))

        ChoiceSheet(
            "Delete this post?",
            "It is removed from this device only; the channel keeps it for its subscribers.",
            [("Delete for me", for_me, True)],
        ).open()
