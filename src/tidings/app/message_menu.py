"""What a long press (or a right click) on a message opens: the quick reactions and the emoji
picker, Reply, Edit, Copy, Info, Edit history, Delete (for everyone or for me), Retry.

Which of these a message offers follows what the client core says about it (its kind, status,
``edited`` and ``deleted``); whether an edit or a deletion for everyone is still allowed (the
24-hour window, own messages only) is the core's decision: a refusal comes back as a
`ClientError` and shows as a toast. A channel post offers less: tidings.app.channel_menu.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kivy.core.clipboard import Clipboard
from kivy.core.window import Window
from kivy.metrics import dp
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView

from tidings.app import timefmt
from tidings.app.emoji_picker import EmojiPicker
from tidings.app.screens.base import running_app
from tidings.app.text.widgets import IntlWrapLabel
from tidings.app.widgets import Chip, FlatButton
from tidings.client.features.validation import QUICK_REACTIONS
from tidings.client.types import Message, MessageStatus

if TYPE_CHECKING:
    from tidings.app.screens.chat import ChatScreen

#: A sheet is never wider than this on a desktop window.
SHEET_MAX_WIDTH = 520


def _fit_width(sheet: ModalView) -> None:
    """Full width on a phone, a centred sheet of at most SHEET_MAX_WIDTH dp on a desktop."""
    if Window.width > dp(SHEET_MAX_WIDTH):
        sheet.size_hint_x = None
        sheet.width = dp(SHEET_MAX_WIDTH)
        sheet.pos_hint = {"center_x": 0.5, "y": 0}


class MessageActions(ModalView):  # type: ignore[misc]  # kivy is untyped
    """The sheet of one message; its looks are in kv/chat.kv."""

    def __init__(self, chat: ChatScreen, message: Message, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _fit_width(self)
        self.chat = chat
        self.message = message
        self.build()

    def build(self) -> None:
        """The reactions and the actions this message offers."""
        message = self.message
        text = message.kind == "text" and not message.deleted
        sent = message.seq is not None
        reactions = self.ids.reactions
        if text and sent:
            reactions.spacing = dp(6)
            for emoji in QUICK_REACTIONS:
                chip = Chip(text=emoji, font_size=dp(22))
                chip.height = chip.width = dp(44)
                chip.bind(on_release=self._reactor(emoji))
                reactions.add_widget(chip)
            more = Chip(text="+", font_size=dp(22))
            more.height = dp(44)
            more.width = dp(44)
            more.bind(on_release=lambda _c: self._pick())
            self.more = more
            reactions.add_widget(more)
        else:
            reactions.height = 0
        actions = self.ids.actions
        if text and sent:
            actions.add_widget(self._action("Reply", self._reply))
        if message.status is MessageStatus.FAILED:
            actions.add_widget(self._action("Retry sending", self._retry))
        if text and sent and message.is_own:
            actions.add_widget(self._action("Edit", self._edit))
        if text:
            actions.add_widget(self._action("Copy text", self._copy))
        if text and message.edited:
            actions.add_widget(self._action("Edit history", self._history))
        if message.kind == "text":
            actions.add_widget(self._action("Info", self._info))
        actions.add_widget(self._action("Delete", self._delete, danger=True))

    def _action(self, text: str, handler: Callable[[], None], danger: bool = False) -> FlatButton:
        button = FlatButton(text=text)
        if danger:
            button.color = running_app().theme.danger
        button.bind(on_release=lambda _b: handler())
        return button

    def action(self, text: str) -> FlatButton:
        """The action button labelled `text` (tests)."""
        for child in self.ids.actions.children:
            if isinstance(child, FlatButton) and child.text == text:
                return child
        raise LookupError(text)

    def _reactor(self, emoji: str) -> Callable[[Any], None]:
        def react(_chip: Any) -> None:
            self.dismiss()
            self.chat.react(self.message, emoji)

        return react

    def _pick(self) -> None:
        self.dismiss()
        message, chat = self.message, self.chat
        EmojiPicker(on_pick=lambda emoji: chat.react(message, emoji)).open()

    def _reply(self) -> None:
        self.dismiss()
        self.chat.editor.cancel()
        self.chat.start_reply(self.message)

    def _edit(self) -> None:
        self.dismiss()
        self.chat.editor.start(self.message)

    def _retry(self) -> None:
        self.dismiss()
        self.chat.retry(self.message)

    def _copy(self) -> None:
        self.dismiss()
        Clipboard.copy(self.message.body)

    def _info(self) -> None:
        self.dismiss()
        running_app().open_message_info(self.message)

    def _history(self) -> None:
        self.dismiss()
        message = self.message
        app = running_app()
        app.tasks.spawn(
            app.require_client().edit_history(message.id),
            on_done=lambda edits: EditHistorySheet(message, edits).open(),
        )

    def _delete(self) -> None:
        self.dismiss()
        message = self.message
        client = running_app().require_client()
        tasks = running_app().tasks

        def for_everyone() -> None:
            tasks.spawn(client.delete_for_everyone(message.id))

        def for_me() -> None:
            tasks.spawn(client.delete_for_me(message.id))

        choices: list[tuple[str, Callable[[], None], bool]] = []
        if message.is_own and message.kind == "text" and not message.deleted:
            choices.append(("Delete for everyone", for_everyone, True))
        choices.append(("Delete for me", for_me, True))
        what = "this message" if message.is_own else f"this message from {message.sender_name}"
        ChoiceSheet(
            f"Delete {what}?",
            "\u201cDelete for everyone\u201d removes it on every device of everyone in the chat; "
            "\u201cDelete for me\u201d only here."
            if len(choices) > 1
            else "It is removed from this device only.",
            choices,
        ).open()


class SheetTitle(Label):  # type: ignore[misc]
    """The bold first line of a sheet."""


class SheetText(Label):  # type: ignore[misc]
    """A muted, wrapped explanation in a sheet."""


class ChoiceSheet(ModalView):  # type: ignore[misc]
    """A confirmation: a question, what it means, a few choices and Cancel."""

    def __init__(
        self,
        title: str,
        text: str,
        choices: Sequence[tuple[str, Callable[[], None], bool]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _fit_width(self)
        box = self.ids.box
        box.add_widget(SheetTitle(text=title))
        if text:
            box.add_widget(SheetText(text=text))
        theme = running_app().theme
        for label, handler, danger in choices:
            button = FlatButton(text=label)
            if danger:
                button.color = theme.danger
            button.bind(on_release=self._chooser(handler))
            box.add_widget(button)
        cancel = FlatButton(text="Cancel")
        cancel.color = theme.text_muted
        cancel.bind(on_release=lambda _b: self.dismiss())
        box.add_widget(cancel)

    def _chooser(self, handler: Callable[[], None]) -> Callable[[Any], None]:
        def choose(_button: Any) -> None:
            self.dismiss()
            handler()

        return choose

    def choice(self, text: str) -> FlatButton:
        """The button labelled `text` (tests)."""
        for child in self.ids.box.children:
            if isinstance(child, FlatButton) and child.text == text:
                return child
        raise LookupError(text)


class EditHistorySheet(ModalView):  # type: ignore[misc]
    """The texts an edited message had, oldest first, and the current one."""

    def __init__(self, message: Message, edits: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _fit_width(self)
        box = self.ids.box
        theme = running_app().theme
        width = min(float(Window.width), float(dp(SHEET_MAX_WIDTH))) - float(dp(48))
        box.add_widget(SheetTitle(text="Edit history"))
        versions = [*edits, (message.body, message.edited_at or message.created_at)]
        for number, (body, at) in enumerate(versions):
            label = "Now" if number == len(versions) - 1 else f"Version {number + 1}"
            box.add_widget(SheetText(text=f"{label} \u00b7 {timefmt.date_time(at)}"))
            box.add_widget(
                IntlWrapLabel(text=body, font_size=dp(15), color=theme.text, max_width=width)
            )
        close = FlatButton(text="Close")
        close.bind(on_release=lambda _b: self.dismiss())
        box.add_widget(close)
