"""A contact's safety number: 60 digits to compare with theirs, and the verified mark.

Opened from a direct chat's header or a group member's row. The number comes from
`Client.safety_number` (the same on both sides); "Mark as verified" records that the user
compared it (`Client.verify`). When the contact's identity key changed — an `IdentityChanged`
event in this session, or the core's system line in the direct chat — a notice says so; if the
contact had been verified, sending to them stays paused until they are verified again.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.label import Label

from tidings.app.screens.base import AppScreen
from tidings.client.types import Message

#: Digits per group and groups per row of the grid (12 groups of 5: three rows of four).
GROUP_DIGITS = 5
GRID_COLUMNS = 4
#: The body of the core's placeholder for a message that did not decrypt (docs/client-api.md).
UNDECRYPTABLE_TEXT = "This message could not be decrypted"


def number_groups(number: str) -> list[str]:
    """The safety number cut into groups of five digits."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return [digits[i : i + GROUP_DIGITS] for i in range(0, len(digits), GROUP_DIGITS)]


def is_identity_line(message: Message, username: str | None = None) -> bool:
    """The core's line saying that a contact's safety number changed (about `username`: the
    line's sender is the contact)."""
    if message.kind != "identity_changed":
        return False
    return username is None or message.sender_name == username


def is_undecryptable(message: Message) -> bool:
    return message.kind == "undecryptable"


class NumberGroup(Label):  # type: ignore[misc]  # kivy is untyped
    """Five digits of the safety number, in the monospace font."""


class SafetyNumberScreen(AppScreen):
    username = StringProperty("")
    #: the 60 digits ("" while loading)
    number = StringProperty("")
    verified = BooleanProperty(False)
    #: the contact's identity key changed since it was last verified
    changed = BooleanProperty(False)
    #: ... and it had been verified: sending to them is paused
    paused = BooleanProperty(False)
    busy = BooleanProperty(False)
    error = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._generation = 0

    def show(self, username: str) -> None:
        """Load and show the safety number shared with `username`."""
        self._generation += 1
        generation = self._generation
        self.username = username
        self.number = ""
        self.verified = False
        self.busy = True
        self.error = ""
        self._set_groups([])
        seen = self.tidings.identity_changes.get(username)
        self.changed = seen is not None
        self.paused = bool(seen)

        def loaded(result: tuple[str, bool, bool]) -> None:
            if generation != self._generation:
                return
            number, verified, changed_line = result
            self.busy = False
            self.number = number
            self.verified = verified
            self.changed = not verified and (self.changed or changed_line)
            self.paused = self.paused and not verified
            self._set_groups(number_groups(number))

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                self.busy = False
                message = getattr(exc, "message", "") or str(exc)
                self.error = f"Could not load the safety number: {message}"

        self.tidings.tasks.spawn(self._load(username), on_done=loaded, on_error=failed)

    async def _load(self, username: str) -> tuple[str, bool, bool]:
        client = self.client
        number = await client.safety_number(username)
        verified = await client.is_verified(username)
        changed = False
        for conv in await client.conversations():
            if conv.kind == "direct" and any(m.username == username for m in conv.members):
                page = await client.history(conv.id)
                changed = any(is_identity_line(m, username) for m in page.messages)
                break
        return number, verified, changed

    def _set_groups(self, groups: list[str]) -> None:
        grid = self.ids.grid
        grid.clear_widgets()
        for group in groups:
            grid.add_widget(NumberGroup(text=group))

    def group_texts(self) -> list[str]:
        """What the grid shows, in reading order (for the tests)."""
        return [str(w.text) for w in reversed(self.ids.grid.children)]

    def on_identity_changed(self, username: str, was_verified: bool) -> None:
        if username == self.username:
            self.show(username)
            self.changed = True
            self.paused = was_verified

    def toggle_verified(self) -> None:
        """Mark as verified, or take the verification back."""
        if self.busy or not self.number:
            return
        username = self.username
        verify = not self.verified
        self.busy = True
        self.error = ""
        client = self.client
        work = client.verify(username) if verify else client.unverify(username)

        def done(_result: None) -> None:
            self.busy = False
            if username != self.username:
                return
            self.verified = verify
            if verify:
                self.changed = False
                self.paused = False
                self.tidings.identity_verified(username)

        def failed(exc: BaseException) -> None:
            self.busy = False
            self.error = getattr(exc, "message", "") or str(exc)

        self.tidings.tasks.spawn(work, on_done=done, on_error=failed)
