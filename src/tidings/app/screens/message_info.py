"""Info about one message: its text, when it was sent (or received) and edited, and for an own
message every other member's delivered and read state (with the times when the client core
records them), then its earlier texts if it was edited."""

from __future__ import annotations

from typing import Any

from kivy.metrics import dp
from kivy.properties import StringProperty
from kivy.uix.boxlayout import BoxLayout

from tidings.app import timefmt
from tidings.app.screens.base import AppScreen, running_app
from tidings.app.text.widgets import IntlWrapLabel
from tidings.client.types import MemberReceipt, Message, MessageDetails


def receipt_state(receipt: MemberReceipt) -> str:
    """ "Read · 3:05 PM", "Delivered", "Sent" for one member."""
    if receipt.read:
        state, at = "Read", getattr(receipt, "read_at", None)
    elif receipt.delivered:
        state, at = "Delivered", getattr(receipt, "delivered_at", None)
    else:
        return "Sent, not delivered yet"
    return f"{state} \u00b7 {timefmt.date_time(at)}" if isinstance(at, int) else state


class ReceiptRow(BoxLayout):  # type: ignore[misc]  # kivy is untyped
    """One member's state."""

    name = StringProperty("")
    state = StringProperty("")


class InfoLine(BoxLayout):  # type: ignore[misc]
    """A key and its value ("Sent" · "Nov 24, 2026, 3:05 PM")."""

    key = StringProperty("")
    value = StringProperty("")


class MessageInfoScreen(AppScreen):
    title = StringProperty("Message info")
    error = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.details: MessageDetails | None = None

    def show(self, message: Message) -> None:
        self.details = None
        self.error = ""
        self.ids.body.clear_widgets()
        self.ids.receipts.clear_widgets()
        self.ids.edits.clear_widgets()
        self.tidings.tasks.spawn(
            self.client.message_details(message.id), on_done=self._show, on_error=self._failed
        )

    def _failed(self, exc: BaseException) -> None:
        self.error = getattr(exc, "message", "") or str(exc)

    def _show(self, details: MessageDetails) -> None:
        self.details = details
        message = details.message
        theme = running_app().theme
        width = max(float(dp(160)), float(self.width) - float(dp(48)))
        body = self.ids.body
        body.add_widget(
            IntlWrapLabel(
                text=message.body,
                font_size=dp(16),
                italic=message.deleted,
                color=theme.text_muted if message.deleted else theme.text,
                max_width=width,
            )
        )
        moment = timefmt.date_time(message.created_at)
        if message.is_own:
            body.add_widget(InfoLine(key="Sent", value=moment))
        else:
            body.add_widget(InfoLine(key="From", value=message.sender_name))
            body.add_widget(InfoLine(key="Received", value=moment))
        if message.edited and message.edited_at:
            body.add_widget(InfoLine(key="Edited", value=timefmt.date_time(message.edited_at)))
        receipts = self.ids.receipts
        for receipt in details.receipts:
            receipts.add_widget(ReceiptRow(name=receipt.name, state=receipt_state(receipt)))
        edits = self.ids.edits
        for text, at in details.edits:
            edits.add_widget(InfoLine(key=timefmt.date_time(at), value=text))

    def row(self, name: str) -> ReceiptRow | None:
        """The receipt row of member `name` (tests)."""
        for child in self.ids.receipts.children:
            if isinstance(child, ReceiptRow) and child.name == name:
                return child
        return None
