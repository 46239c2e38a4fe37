"""Waking offline devices after something durable happened: the push decision, per device.

:class:`PushService` is what the delivery service calls once a message, receipt or membership
change is stored (one call each; they return at once). For every device of the concerned
accounts that has a push registration and no live connection, it builds a
:class:`~tidings.server.push.decide.PushEvent` (the conversation's kind, the account's level
and mute, whether the account is mentioned or is the sender) and asks the pure
:func:`~tidings.server.push.decide.decide`; a wake goes to the
:class:`~tidings.server.push.dispatcher.PushDispatcher`, which never waits.

Guarantees, first:

* Delivery never waits for pushes: the hooks only schedule a task; reading registrations,
  deciding and dispatching happen after, and their failures are logged, never raised.
* A push carries an opaque conversation hint and a counter, nothing else. The hint is an
  HMAC-SHA256 of (account id, conversation id) under a key the server keeps, truncated to 128
  bits: the push service cannot link two accounts' pushes about one conversation, nor guess
  the conversation. Each member learns its own hint in ``Conversation.push_hint`` and syncs
  that conversation first. The counter is the number of events since the device last
  connected.
* A device's push state (last push time and kind, last silent push, events since its last
  connect) lives in memory, per node: losing it on a restart costs at most one extra wake per
  device, and writing it to the database would cost a write per push. Connect times come from
  :class:`~tidings.server.push.presence.PresenceBus`. A multi-node deployment will keep both
  in the shared bus.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

from tidings.protocol import Envelope
from tidings.server.domain.records import MembershipChange, WatermarkMove
from tidings.server.push.decide import (
    DEFAULT_COALESCE_SECONDS,
    DEFAULT_SILENT_INTERVAL,
    ConversationKind,
    DevicePushState,
    EventKind,
    NotifyLevel,
    PushEvent,
    decide,
)
from tidings.server.push.dispatcher import PushDispatcher
from tidings.server.push.presence import PresenceBus
from tidings.server.push.provider import Platform, PushRegistration
from tidings.server.push.store import DEFAULT_SETTING, PushStore, StoredRegistration

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: bytes of HMAC kept in a hint (base64url: 22 characters)
HINT_BYTES = 16
#: Tasks that make push decisions at once (each works through the queued ones in turn).
_DECIDING_TASKS = 4


def load_or_create_hint_key(path: Path) -> bytes:
    """The server's 32-byte hint key at ``path``, generated (mode 0600) on first use."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = os.urandom(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process won: use its key
        key = path.read_bytes()
    finally:
        tmp.unlink()
    return key


def device_ref(account_id: str, device_id: int) -> str:
    """``PushRegistration.device_id``: how a dropped registration finds its row again."""
    return f"{account_id}:{device_id}"


def to_registration(stored: StoredRegistration) -> PushRegistration:
    return PushRegistration(
        Platform(stored.platform),
        stored.token,
        device_id=device_ref(stored.account_id, stored.device_id),
        p256dh=stored.p256dh,
        auth=stored.auth,
        topic=stored.topic,
    )


class PushService:
    """Decides and dispatches wakes for offline devices. One per server process."""

    def __init__(
        self,
        store: PushStore,
        presence: PresenceBus,
        dispatcher: PushDispatcher,
        hint_key: bytes,
        *,
        coalesce_seconds: float = DEFAULT_COALESCE_SECONDS,
        silent_interval: float = DEFAULT_SILENT_INTERVAL,
        clock: Callable[[], float] = time.time,
        platforms: Iterable[Platform] = (Platform.LOG,),
        vapid_public_key: str = "",
        allow_http_endpoints: bool = False,
        allow_private_endpoints: bool = False,
    ) -> None:
        #: platforms a device may register for (those with a provider)
        self.platforms = frozenset(platforms)
        #: the WebPush application server key; empty without WebPush
        self.vapid_public_key = vapid_public_key
        self.allow_http_endpoints = allow_http_endpoints
        self.allow_private_endpoints = allow_private_endpoints
        self.store = store
        self.presence = presence
        self.dispatcher = dispatcher
        self._key = hint_key
        self.coalesce_seconds = coalesce_seconds
        self.silent_interval = silent_interval
        self._clock = clock
        self._state: dict[Address, DevicePushState] = {}
        self._events: dict[Address, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: decisions waiting for a task to make them, and how many tasks are making them
        self._queued: collections.deque[Coroutine[Any, Any, None]] = collections.deque()
        self._draining = 0
        #: wakes handed to the dispatcher, and events decided not to wake anybody
        self.submitted = 0
        self.suppressed = 0
        presence.on_connect = self._connected

    # ------------------------------------------------------------------ the hooks

    def hint(self, account_id: str, conv_id: str) -> str:
        """The opaque hint of ``conv_id`` in pushes to ``account_id``'s devices."""
        mac = hmac.new(self._key, f"{account_id}\x00{conv_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:HINT_BYTES]).rstrip(b"=").decode()

    def message(
        self,
        envelope: Envelope,
        recipients: Sequence[str],
        sender: Address,
        *,
        quiet: bool = False,
    ) -> None:
        """A message was stored (its Accepted is on the way)."""
        kind = EventKind.REACTION if quiet else EventKind.MESSAGE
        mentioned = frozenset(envelope.mentions)
        self._spawn(self._fan(envelope.conv, recipients, sender, kind, envelope.sender, mentioned))

    def receipt(self, move: WatermarkMove, device: Address) -> None:
        """A member's watermarks rose: its senders and its own other devices may sync."""
        self._spawn(
            self._fan(
                move.conv, (*move.senders, move.account), device, EventKind.RECEIPT, move.account
            )
        )

    def membership(self, change: MembershipChange) -> None:
        """Members were added, removed or left, or a conversation was created."""
        envelope = change.envelope
        actor = (envelope.sender, envelope.sender_device)
        self._spawn(
            self._fan(envelope.conv, change.recipients, actor, EventKind.MEMBERSHIP, actor[0])
        )

    # ------------------------------------------------------------------ deciding

    async def _fan(
        self,
        conv_id: str,
        accounts: Iterable[str],
        skip: Address,
        kind: EventKind,
        origin: str,
        mentioned: frozenset[str] = frozenset(),
    ) -> None:
        accounts = list(dict.fromkeys(accounts))
        targets = await self.store.push_targets(conv_id, accounts)
        if not targets.registrations:
            return
        conversation = (
            ConversationKind.DIRECT if targets.conv_kind == "direct" else ConversationKind.GROUP
        )
        now = self._clock()
        for stored in targets.registrations:
            address = (stored.account_id, stored.device_id)
            if address == skip or self.presence.is_live(*address):
                continue
            setting = targets.settings.get(stored.account_id, DEFAULT_SETTING)
            count = self._events.get(address, 0) + 1
            self._events[address] = count
            event = PushEvent(
                kind=kind,
                conversation=conversation,
                level=NotifyLevel(setting.level),
                muted_until=setting.muted_until / 1000 if setting.muted_until else None,
                mentioned=stored.account_id in mentioned,
                from_self=stored.account_id == origin,
                conversation_hint=self.hint(stored.account_id, conv_id),
                counter=min(count, 2**31 - 1),
            )
            state = self._device_state(address)
            wake = decide(
                event,
                state,
                now=now,
                coalesce_seconds=self.coalesce_seconds,
                silent_interval=self.silent_interval,
            )
            if wake is None:
                self.suppressed += 1
                continue
            self._state[address] = DevicePushState(
                last_push_at=now,
                last_push_kind=wake.kind,
                last_connect_at=state.last_connect_at,
                last_silent_at=now if wake.kind.value == "silent" else state.last_silent_at,
            )
            self.submitted += 1
            self.dispatcher.submit(to_registration(stored), wake)

    def _device_state(self, address: Address) -> DevicePushState:
        state = self._state.get(address, DevicePushState())
        connected = self.presence.last_connect.get(address)
        if connected is not None and connected != state.last_connect_at:
            state = DevicePushState(
                state.last_push_at, state.last_push_kind, connected, state.last_silent_at
            )
        return state

    def _connected(self, address: Address) -> None:
        self._events.pop(address, None)

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # A few tasks work through the decisions queued meanwhile: a message or receipt costs
        # no task of its own (most decisions end at once: nobody to wake).
        self._queued.append(work)
        if self._draining < _DECIDING_TASKS:
            self._draining += 1
            task = asyncio.get_running_loop().create_task(self._decide_queued())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _decide_queued(self) -> None:
        queued = self._queued
        try:
            while queued:
                work = queued.popleft()
                try:
                    await work
                except Exception:
                    log.exception("push: deciding wakes failed")
        finally:
            self._draining -= 1
            if not self._draining:  # cancelled (the server stopping): nothing else runs them
                for work in queued:
                    work.close()
                queued.clear()

    async def drop_registration(self, registration: PushRegistration, reason: str) -> None:
        """The dispatcher's ``on_drop_registration``: delete the row if it still holds the
        token the provider refused."""
        account_id, _, device = registration.device_id.rpartition(":")
        if not account_id or not device.isdigit():
            return
        if await self.store.drop_push_registration(account_id, int(device), registration.token):
            log.info("push: dropped the registration of %s (%s)", registration.device_id, reason)

    async def settle(self) -> None:
        """Wait until every decision is made and every wake handled (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.dispatcher.join()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
