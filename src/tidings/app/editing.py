"""Editing an own message in a chat: the composer fills with its text, the bar above it says
"Editing", Enter saves (`Client.edit`), the close button cancels. Whether the message may
still be edited is the client core's decision; a refusal shows as a toast."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kivy.clock import Clock

from tidings.app.theme import rich
from tidings.client.types import Message

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen


class Editing:
    """The message being edited in one chat screen (None: the composer writes a new one)."""

    def __init__(self, chat: ChatScreen) -> None:
        self.chat = chat
        self.message: Message | None = None

    def start(self, message: Message) -> None:
        chat = self.chat
        chat.cancel_reply()
        self.message = message
        chat.editing = True
        chat.reply_name = "message"
        chat.reply_text = rich(" ".join(message.body.split()))
        composer = chat.ids.composer
        composer.text = message.body
        Clock.schedule_once(lambda _dt: setattr(composer, "focus", True), 0)

    def save(self) -> bool:
        """Enter in the composer: save the edit. False when nothing is being edited."""
        message = self.message
        if message is None:
            return False
        chat = self.chat
        body = chat.ids.composer.text.strip()
        if body == message.body:
            self.cancel()
            return True

        def saved(_edited: Message) -> None:
            if self.message is message:
                self.cancel()

        # a refusal (an empty text, too late) is reported and the composer keeps the text
        chat.tidings.tasks.spawn(chat.client.edit(message.id, body), on_done=saved)
        return True

    def cancel(self) -> None:
        if self.message is None:
            return
        self.message = None
        chat = self.chat
        chat.editing = False
        chat.ids.composer.text = ""
        chat.cancel_reply()
