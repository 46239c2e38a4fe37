"""The part of :class:`~tidings.client.Client` that hands events to its subscribers (a mixin):
each :meth:`events` subscription has its own unbounded queue and sees every event from then
on, in order; a burst of changes to one conversation makes one ``ConversationUpdated`` once the
loop turns, not one per message."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..types import ClientEvent, ConversationUpdated

if TYPE_CHECKING:
    from ..store import LocalStore


class Subscription:
    """One subscriber of :meth:`Client.events`: its own unbounded queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ClientEvent] = asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self.queue.get()


class EventFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        _store: LocalStore
        _closed: bool
        _subscribers: weakref.WeakSet[Subscription]
        _changed_conversations: dict[str, None]

    def events(self) -> AsyncIterator[ClientEvent]:
        """A new subscription: every event from now on, in order."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def _conversations_changed(self, conv_ids: set[str]) -> None:
        """A ConversationUpdated for each of ``conv_ids`` once the loop turns (at once
        without a running loop: a suspend)."""
        if not conv_ids:
            return
        first = not self._changed_conversations
        self._changed_conversations.update(dict.fromkeys(conv_ids))
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._emit_changed_conversations)
            except RuntimeError:
                self._emit_changed_conversations()

    def _emit_changed_conversations(self) -> None:
        changed, self._changed_conversations = self._changed_conversations, {}
        if not self._closed:
            for conv_id in changed:
                self._emit_conversation(conv_id)

    def _emit_conversation(self, conv_id: str) -> None:
        if self._subscribers:
            found = self._store.conversation(conv_id)
            if found is not None:
                self._emit(ConversationUpdated(found))

    def _emit(self, event: ClientEvent) -> None:
        for subscription in list(self._subscribers):
            subscription.queue.put_nowait(event)
