"""The part of :class:`~tidings.client.Client` the everyday features add (a mixin, so the
client's own module stays about connecting, sending and receiving): note to self, editing and
deleting, the unread separator, message details, and the settings that go with them.

Every method checks what the server cannot (it never sees content): an edit or deletion must
be of an own text, not deleted, within the window; an edit must have text."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from tidings.protocol.content import DELETE_WINDOW_MS, EDIT_WINDOW_MS, Content, Delete, Edit

from ..errors import ClientError
from ..types import (
    ClientEvent,
    Conversation,
    MemberReceipt,
    Message,
    MessageDetails,
    MessageRemoved,
    MessageStatus,
    UnreadMarker,
)
from . import edits, profiles
from .validation import check_text

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..store import LocalStore
    from ..types import Account


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EverydayFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _engine: Engine

        def _check_open(self) -> None: ...
        async def _send(self, conv_id: str, content: Content) -> uuid.UUID: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _emit_conversation(self, conv_id: str) -> None: ...
        async def open_direct(self, username: str) -> Conversation: ...

    # ------------------------------------------------------------------ note to self

    async def note_to_self(self) -> Conversation:
        """The conversation with only this account's own devices (made on the server the first
        time): what is written there reaches every other device of the account, end-to-end
        encrypted like any direct message, and nobody else."""
        return await self.open_direct(self.account.username)

    def sending(self) -> int:
        """How many own messages, reactions, edits and deletions still wait for the server
        (an edit has no row of its own whose status would say so)."""
        return len(self._engine.outbox)

    # ------------------------------------------------------------------ edit and delete

    def _own_text(self, message_id: uuid.UUID, window_ms: int, what: str) -> Message:
        self._check_open()
        message = self._store.message(message_id)
        if message is None:
            raise ClientError("not_found", "no such message")
        if not message.is_own or message.kind != "text":
            raise ClientError("not_own", f"only your own messages can be {what}")
        if message.deleted:
            raise ClientError("deleted", "the message was deleted")
        if message.status in (MessageStatus.SENDING, MessageStatus.FAILED):
            raise ClientError("not_sent", f"a message can be {what} once it was sent")
        if _now_ms() - message.created_at > window_ms:
            hours = window_ms // 3_600_000
            raise ClientError("too_late", f"a message can be {what} for {hours} hours")
        return message

    async def edit(self, message_id: uuid.UUID, body: str) -> Message:
        """Replace the text of an own sent message (within 24 hours); every device of every
        member shows the new text and an "edited" mark, and keeps the earlier texts
        (:meth:`edit_history`). Raises ``empty_message``, ``not_found``, ``not_own``,
        ``deleted``, ``not_sent`` or ``too_late``."""
        check_text(body)
        message = self._own_text(message_id, EDIT_WINDOW_MS, "edited")
        await self._send(message.conv_id, Edit(target=message_id, body=body))
        return self._store.message(message_id) or message

    async def delete_for_everyone(self, message_id: uuid.UUID) -> Message:
        """Delete an own sent message (within 24 hours) on every device of every member: its
        text, edit history and reactions are gone from their stores and search indexes; a
        "This message was deleted" line stays."""
        message = self._own_text(message_id, DELETE_WINDOW_MS, "deleted")
        await self._send(message.conv_id, Delete(target=message_id))
        return self._store.message(message_id) or message

    async def delete_for_me(self, message_id: uuid.UUID) -> None:
        """Remove any message from this device only (store and search index); other devices
        and other members keep it. Emits ``MessageRemoved``."""
        self._check_open()
        with self._store.transaction():
            conv_id = edits.delete_for_me(self._store.db, message_id)
        if conv_id is None:
            raise ClientError("not_found", "no such message")
        self._emit(MessageRemoved(conv_id, message_id))
        self._emit_conversation(conv_id)

    async def edit_history(self, message_id: uuid.UUID) -> list[tuple[str, int]]:
        """The earlier texts of an edited message, oldest first: (text, written at ms)."""
        return [(e.body, e.at) for e in edits.history(self._store.db, message_id)]

    # ------------------------------------------------------------------ reading

    async def unread_marker(self, conv_id: str) -> UnreadMarker:
        """Where the unread separator goes in ``conv_id``: the first message from others above
        my read watermark and how many messages from others are unread."""
        db = self._store.db
        read_upto = self._store.read_upto(conv_id)
        row = db.execute(
            "SELECT id FROM messages WHERE conv_id = ? AND seq > ? AND is_own = 0"
            " AND kind = 'text' ORDER BY seq LIMIT 1",
            (conv_id, read_upto),
        ).fetchone()
        (count,) = db.execute(
            "SELECT count(*) FROM messages WHERE conv_id = ? AND seq > ? AND is_own = 0"
            " AND kind = 'text'",
            (conv_id, read_upto),
        ).fetchone()
        first = None if row is None else uuid.UUID(str(row[0]))
        return UnreadMarker(conv_id, first, int(count))

    async def message_details(self, message_id: uuid.UUID) -> MessageDetails:
        """A message with, for an own one, every other member's delivered/read state (from
        their watermarks) and its edit history."""
        self._check_open()
        message = self._store.message(message_id)
        if message is None:
            raise ClientError("not_found", "no such message")
        receipts: list[MemberReceipt] = []
        if message.is_own and message.seq is not None:
            marks = {
                str(account): (int(delivered), int(read))
                for account, delivered, read in self._store.db.execute(
                    "SELECT account_id, delivered, read FROM watermarks WHERE conv_id = ?",
                    (message.conv_id,),
                )
            }
            times = profiles.times(self._store.db, message.conv_id)
            for member in self._store.members(message.conv_id):
                if member.account_id == self.account.account_id:
                    continue
                delivered, read = marks.get(member.account_id, (0, 0))
                delivered_at, read_at = times.get(member.account_id, (None, None))
                receipts.append(
                    MemberReceipt(
                        member.account_id,
                        member.name or member.username,
                        delivered >= message.seq,
                        read >= message.seq,
                        # the time the watermark last moved, shown once it covers the message
                        delivered_at if delivered >= message.seq else None,
                        read_at if read >= message.seq else None,
                    )
                )
        history = tuple((e.body, e.at) for e in edits.history(self._store.db, message_id))
        return MessageDetails(message, tuple(receipts), history)
