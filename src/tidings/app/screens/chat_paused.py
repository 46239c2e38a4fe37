"""The bar of :class:`~tidings.app.screens.chat.ChatScreen` that says sending is paused (a
mixin): a verified contact's safety number changed in this session, or the last own message
was held back for it; tapping the bar leads to the safety number, or to a group's members."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.app.theme import rich

if TYPE_CHECKING:
    from tidings.app.application import TidingsApp
    from tidings.client import Client
    from tidings.client.types import Conversation, Message

#: `Message.fail_reason` of a message held back because a verified contact's key changed.
IDENTITY_CHANGED = "identity_changed"


class PausedSending:
    """Mixed into :class:`~tidings.app.screens.chat.ChatScreen`."""

    if TYPE_CHECKING:
        conv_id: str
        title: str
        is_group: bool
        paused: bool
        paused_text: str
        conversation: Conversation | None
        messages: list[Message]

        @property
        def tidings(self) -> TidingsApp: ...
        @property
        def client(self) -> Client: ...
        def open_info(self) -> None: ...

    def peer(self) -> str | None:
        """The other person of a direct chat."""
        conv = self.conversation
        if conv is None or conv.kind != "direct" or conv.note_to_self:
            return None
        me = self.client.account.account_id
        others = [m.username for m in conv.members if m.account_id != me]
        return others[0] if others else conv.title

    def on_identity_changed(self, _username: str) -> None:
        """Someone's safety number changed or was verified again: is sending paused here?"""
        self._update_paused()

    def _update_paused(self) -> None:
        conv = self.conversation
        if conv is None:
            self.paused = False
            return
        me = self.client.account.account_id
        others = [m.username for m in conv.members if m.account_id != me]
        changes = self.tidings.identity_changes
        changed = [name for name in others if changes.get(name)]
        own = [m for m in self.messages if m.is_own and m.kind == "text"]
        held = bool(own) and own[-1].fail_reason == IDENTITY_CHANGED
        peer = self.peer()
        if changed or (held and peer is None):
            self._show_paused(changed[0] if changed else None)
        elif held and peer is not None:
            conv_id = self.conv_id

            def checked(verified: bool) -> None:
                if conv_id == self.conv_id:
                    if verified:
                        self.paused = False
                    else:
                        self._show_paused(peer)

            self.tidings.tasks.spawn(
                self.client.is_verified(peer), on_done=checked, on_error=lambda _e: None
            )
        else:
            self.paused = False

    def _show_paused(self, name: str | None) -> None:
        if self.is_group:
            who = f"the safety number of {rich(name)}" if name else "a member's safety number"
            self.paused_text = (
                f"[b]Sending is paused:[/b] {who} changed. Tap to open the members and "
                "verify it again."
            )
        else:
            peer = name or self.peer() or self.title
            self.paused_text = (
                f"[b]Sending to {rich(peer)} is paused:[/b] their safety number changed. "
                "Tap to compare it and verify it again."
            )
        self.paused = True

    def review_paused(self) -> None:
        """The paused bar was tapped: to the safety number (or the group's members)."""
        peer = self.peer()
        if peer is not None:
            self.tidings.open_safety_number(peer)
        else:
            self.open_info()
