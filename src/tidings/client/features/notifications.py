"""The part of :class:`~tidings.client.Client` about push and notifications (a mixin): this
device's push registration, each conversation's notification setting (shared by all of the
account's devices), and :meth:`sync_once`, what a push wake-up runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from tidings.protocol import push as push_wire
from tidings.protocol import routes

from ..errors import NotConnected
from ..push import NotificationSetting, PushRegistration
from ..types import ClientEvent, Message, MessageAdded, Notify
from .events import Subscription

if TYPE_CHECKING:
    import weakref

    from ..core.engine import Engine
    from ..push import PushState
    from ..rest import Rest
    from ..runtime import Runtime
    from ..store import LocalStore


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`Client.sync_once` brought: others' new messages, those of them that should
    alert on this device, and whether it finished (False: the rest comes next time)."""

    arrived: tuple[Message, ...]
    notify: tuple[Message, ...]
    complete: bool


class PushFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        _store: LocalStore
        _rest: Rest
        _engine: Engine
        _runtime: Runtime
        _push: PushState
        _subscribers: weakref.WeakSet[Subscription]
        _background: set[asyncio.Task[None]]

        def _check_open(self) -> None: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _emit_conversation(self, conv_id: str) -> None: ...
        async def wait_synced(
            self,
            timeout: float | None = None,  # noqa: ASYNC109 - the documented API
            fail_fast: bool = False,
        ) -> None: ...

    async def register_push(
        self,
        platform: str,
        token: str,
        *,
        p256dh: str = "",
        auth: str = "",
        topic: str = "",
    ) -> PushRegistration:
        """Set (or replace) this device's push registration: ``apns``/``fcm`` with the
        device token, ``webpush`` with the subscription's endpoint, ``p256dh`` and ``auth``
        (made with :meth:`vapid_key`), or ``log``. ServerRefused ``bad_frame`` when the server
        has no such service or refuses the endpoint."""
        self._check_open()
        body = msgspec.convert(
            {"platform": platform, "token": token, "p256dh": p256dh, "auth": auth, "topic": topic},
            push_wire.PushRegistration,
        )
        registration = _registration(
            await self._rest.call(routes.SET_PUSH, push_wire.PushStatus, body)
        )
        assert registration is not None  # the server answers what it stored
        return registration

    async def clear_push(self) -> None:
        """Remove this device's push registration: no more wake-ups."""
        self._check_open()
        await self._rest.send(routes.CLEAR_PUSH)

    async def push_registration(self) -> PushRegistration | None:
        """This device's registration as the server has it, or None."""
        self._check_open()
        return _registration(await self._rest.call(routes.PUSH_REGISTRATION, push_wire.PushStatus))

    async def vapid_key(self) -> str:
        """The server's WebPush application server key (base64url); "" without WebPush."""
        self._check_open()
        return (await self._rest.call(routes.VAPID_KEY, push_wire.VapidKey)).public_key

    async def set_notifications(
        self, conv_id: str, level: str, mute_until: int | None = None
    ) -> NotificationSetting:
        """Set how ``conv_id`` notifies all of my devices: ``all``, ``mentions`` or ``none``,
        muted until ``mute_until`` (ms since the epoch; :func:`tidings.client.push.mute_until`
        turns "8h"/"1w"/"always" into one; None unmutes)."""
        self._check_open()
        body = msgspec.convert(
            {"level": level, "muted_until": mute_until}, push_wire.UpdateNotifications
        )
        answer = await self._rest.call(
            routes.SET_NOTIFICATIONS, push_wire.Notifications, body, conv=conv_id
        )
        self._push.set(conv_id, NotificationSetting(answer.level, answer.muted_until))
        self._emit_conversation(conv_id)
        return self._push.setting(conv_id)

    def notifications(self, conv_id: str) -> NotificationSetting:
        """The notification setting of ``conv_id`` as last learnt from the server (works
        offline; every conversations refresh brings the other devices' changes)."""
        return self._push.setting(conv_id)

    def conversation_for_hint(self, hint: str) -> str | None:
        """The conversation a push's opaque hint names, if known: sync it first."""
        return self._push.conversation_for_hint(hint)

    async def sync_once(self, budget: float = 25.0) -> SyncResult:
        """What a push wake-up runs: connect, replay until ``Synced``, store, ack, send the
        outbox, close the socket. Returns what arrived and which of it should notify. Ends
        within ``budget`` seconds: whatever is not done by then (a replay cut short, a message
        still sending) stays pending on the server or in the outbox and is picked up next
        time; nothing is lost."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget, 0.5)
        subscription = Subscription()
        self._subscribers.add(subscription)
        complete = False
        try:
            await self._runtime.start()
            try:
                # Leave a fifth of the budget (at most 5 s) for the outbox and a clean close.
                await self.wait_synced(
                    timeout=max(0.1, deadline - loop.time() - min(5.0, budget / 5)),
                    fail_fast=True,
                )
                complete = True
            except NotConnected:
                complete = False
            while complete and self._engine.outbox and loop.time() < deadline - 1.0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the engine has no event for an empty outbox
            pending = [t for t in self._background if not t.done()]
            remaining = deadline - loop.time() - 1.0
            if pending and remaining > 0:
                await asyncio.wait(pending, timeout=remaining)
            complete = complete and not self._engine.outbox
        finally:
            await self._runtime.pause()
            self._subscribers.discard(subscription)
        arrived: list[Message] = []
        notify: list[Message] = []
        while not subscription.queue.empty():
            event = subscription.queue.get_nowait()
            if isinstance(event, MessageAdded) and not event.message.is_own:
                arrived.append(event.message)
            elif isinstance(event, Notify):
                notify.append(event.message)
        return SyncResult(tuple(arrived), tuple(notify), complete)

    def _emit_notify(self, message: Message) -> None:
        conversation = self._store.conversation(message.conv_id)
        title = conversation.title if conversation is not None else message.sender_name
        self._emit(Notify(message, title, message.mentions_me))


def _registration(status: push_wire.PushStatus) -> PushRegistration | None:
    r = status.registration
    if r is None:
        return None
    return PushRegistration(r.platform, r.token, r.p256dh, r.auth, r.topic, status.updated_at)
