"""Sending many texts at once: the part of :class:`~tidings.client.Client` a bot uses (a mixin).

:meth:`BulkSending.send_texts` keeps every guarantee of ``send_text`` (each text is in the store
as ``sending`` before anything goes on the wire, has its own id, is sent exactly once and keeps
its place in the conversation) and costs one transaction for the whole list instead of one per
text: the outbox rows, the message rows and their search index entries commit together.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.protocol import MAX_PAYLOAD_BYTES
from tidings.protocol.content import Text

from ..core import engine
from ..core.payload import encode_bound
from ..errors import ClientError
from ..ids import new_message_id
from ..types import Message
from .validation import check_text

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..store import LocalStore


class BulkSending:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        _store: LocalStore
        _engine: engine.Engine
        _runtime: Runtime
        _just_added: dict[uuid.UUID, Message]

        def _check_open(self) -> None: ...
        def is_channel(self, conv_id: str) -> bool: ...
        async def _before_send(self, conv_id: str) -> None: ...

    async def send_texts(self, conv_id: str, bodies: Sequence[str]) -> list[Message]:
        """Store the texts ``bodies`` as ``sending``, in this order and in one transaction, and
        send them as soon as the server is there; the stored messages, in the same order.
        All or none: a text that cannot be sent (empty, too large) raises before anything is
        stored."""
        self._check_open()
        for body in bodies:
            check_text(body)  # empty_message, payload_too_large
        if not self._store.has_conversation(conv_id):
            raise ClientError("not_found", "no such conversation")
        if self.is_channel(conv_id):  # a channel's log holds signed posts only
            raise ClientError("not_supported", "a channel takes posts only (Client.post)")
        if not bodies:
            return []
        queued: list[tuple[engine.OutboxItem, Text]] = []
        for body in bodies:
            message_id = new_message_id()
            content = Text(body=body)
            payload = encode_bound(content, conv_id, message_id)
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ClientError("payload_too_large", "the message is too large")
            queued.append((engine.OutboxItem(message_id, conv_id, payload), content))
        await self._before_send(conv_id)  # profile key first, typing off
        created_at, now = time.time_ns() // 1_000_000, self._runtime.now()
        for item, content in queued:
            self._engine.send(item, content, created_at, now)
        await self._runtime.flush()  # one batch of effects: one transaction
        self._runtime.wake()
        ids = [item.id for item, _ in queued]
        built = self._just_added  # as the events showed them (when anyone listens)
        if all(i in built for i in ids):
            return [built[i] for i in ids]
        return self._store.messages(ids)
