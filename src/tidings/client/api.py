"""The public client API: :class:`Client` (see docs/client-api.md).

This module holds what the client is about: connecting, sending and receiving, and turning
what the engine applied into events. Each further area is a mixin in ``features/`` (accounts
and devices, conversations, push, backup, safety numbers, events, everyday features, social)
or beside this module (attachments in ``mediaapi.py``, channels in ``channels.py``).
Conversations and members come from the server's REST API; messages come through the engine
and runtime. Everything here runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path

from tidings.protocol import MAX_PAYLOAD_BYTES, Watermark, routes
from tidings.protocol.close import CloseCode
from tidings.protocol.content import Content, ProfileKey, Reaction, Text

from . import lifecycle, profilelock, tls
from .backup.service import BackupService
from .channels import ChannelFeatures
from .config import ClientConfig as ClientConfig
from .core import engine
from .core.payload import encode_bound
from .core.sealing import EndToEnd
from .errors import (
    CAUSE_DNS,
    CAUSE_REFUSED,
    CAUSE_TLS,
    CAUSE_WRONG_SCHEME,
    ClientError,
    ConnectionEnded,
    DeviceRemoved,
    NotConnected,
    ServerRefused,
)
from .features.accounts import DB_NAME as DB_NAME
from .features.accounts import TOKEN_NAME as TOKEN_NAME
from .features.accounts import AccountFeatures, _ws_url
from .features.backup import BackupFeatures
from .features.bulk import BulkSending
from .features.conversations import ConversationFeatures
from .features.events import EventFeatures, Subscription
from .features.everyday import EverydayFeatures
from .features.notifications import PushFeatures
from .features.notifications import SyncResult as SyncResult
from .features.safety import SafetyFeatures
from .features.safety import SafetyNumber as SafetyNumber
from .features.social import SocialFeatures
from .features.validation import check_emoji, check_text
from .ids import new_message_id
from .mediaapi import AttachmentFeatures
from .mediaflow import MediaFlow
from .push import PushState
from .rest import Rest
from .runtime import Runtime
from .store import Changes, LocalStore
from .types import (
    Account,
    Connection,
    ConnectionChanged,
    ConnectionState,
    IdentityChanged,
    Message,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
    Page,
    SearchHit,
    Synced,
    Undecryptable,
)

log = logging.getLogger("tidings.client")

#: connect failures that waiting cannot fix: :meth:`Client.wait_synced` with ``fail_fast``
#: raises at the first one
_HOPELESS = frozenset({CAUSE_REFUSED, CAUSE_DNS, CAUSE_WRONG_SCHEME, CAUSE_TLS})
#: one-time prekeys used by new sessions after which the server's count is checked (refill)
PREKEY_CHECK_EVERY = 10

_STATES = {
    engine.Phase.IDLE: ConnectionState.OFFLINE,
    engine.Phase.OFFLINE: ConnectionState.OFFLINE,
    engine.Phase.CONNECTING: ConnectionState.CONNECTING,
    engine.Phase.HANDSHAKE: ConnectionState.CONNECTING,
    engine.Phase.REPLAY: ConnectionState.ONLINE,
    engine.Phase.LIVE: ConnectionState.ONLINE,
    engine.Phase.CLOSED_FATAL: ConnectionState.CLOSED,
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Client(
    AccountFeatures,
    ConversationFeatures,
    PushFeatures,
    BackupFeatures,
    SafetyFeatures,
    EventFeatures,
    AttachmentFeatures,
    EverydayFeatures,
    SocialFeatures,
    ChannelFeatures,
    BulkSending,
):
    """One account on one device, backed by a profile directory."""

    def __init__(
        self,
        profile: Path,
        store: LocalStore,
        account: Account,
        token: str,
        config: ClientConfig | None = None,
    ) -> None:
        self.profile = profile
        self.account = account
        try:  # one process at a time (client/profilelock.py), for this client's lifetime
            self._profile_lock: profilelock.ProfileLock | None = profilelock.acquire(profile)
        except ClientError:
            store.close()
            raise
        if config is None:  # what the profile was created with (client/tls.py)
            insecure, ca_file = tls.load(profile)
            config = ClientConfig(insecure=insecure, ca_file=ca_file)
        self.config = config
        tls.check_url(account.server_url, self.config.insecure)
        self._tls = tls.ssl_context(self.config.ca_file)
        self.connection = Connection(ConnectionState.OFFLINE, None, None)
        self._store = store
        self._rest = Rest(
            account.server_url,
            token,
            self.config.http_timeout,
            self._on_unauthorized,
            verify=self._tls,
        )
        self._engine = engine.Engine(
            account.account_id, random.Random(), store.restored(), self.config.engine
        )
        self._e2ee = EndToEnd(store.keys, account.account_id, account.device_id)
        self._runtime = Runtime(
            self._engine,
            store,
            self._e2ee,
            self._rest,
            _ws_url(account.server_url),
            token,
            self._on_applied,
            self._refresh,
            self._members_of,
        )
        self._runtime.ssl_context = self._tls
        self._social_init()  # typing, receipt times (features/social.py)
        self._channels_init()  # broadcast channels (client/channels.py)
        self._push = PushState(store.db)
        self._runtime.annotate = self._push.annotator(account.account_id)
        self._media = MediaFlow(
            profile,
            store,
            self._rest,
            account.server_url,
            cache_bytes=self.config.media_cache_bytes,
            auto_download_bytes=self.config.auto_download_bytes,
            send=self._send_media,
            changed=self._media_changed,
            progress=self._media_progress,
            verify=self._tls,  # blob URLs are checked like the server (client/tls.py)
        )
        self._key_upload = asyncio.Lock()
        # Weak: a subscriber that stopped iterating (its task was cancelled) just goes away.
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._synced = asyncio.Event()
        #: set when the first connect failed for a cause waiting cannot fix (_HOPELESS)
        self._hopeless = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        #: conversations changed since their last ConversationUpdated, sent once the loop
        #: turns (a burst of messages makes one event per conversation, not one per message)
        self._changed_conversations: dict[str, None] = {}
        #: the messages the last applied batch added, as built for their events
        self._just_added: dict[uuid.UUID, Message] = {}
        #: own messages still sending as their last event showed them (until their next
        #: change): an Accepted makes their next event from these without reading the row
        self._unsent: dict[uuid.UUID, Message] = {}
        self._closed = False
        #: PRAGMA data_version at suspend(): resume() tells whether another process wrote
        self._suspended_at = 0
        self._backup = BackupService(
            store,
            account,
            self._rest,
            keep=self.config.keep_messages,
            interval=self.config.backup_interval,
            limits=self.config.vault_limits,
            params=self.config.vault_params,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._check_open()
        await self._runtime.start()
        self._media.resume_pending()  # uploads a previous run left unfinished
        self._backup.start()

    async def wait_synced(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the documented API
        fail_fast: bool = False,
    ) -> None:
        """Wait until the replay after the current connection is complete. Raises
        :class:`ConnectionEnded` (:class:`DeviceRemoved` for 4401/HTTP 401) at once when the
        connection ended for good: it will never sync. With ``fail_fast`` (one-shot commands)
        a first connect that waiting cannot fix (refused, DNS, wrong scheme, TLS) raises its
        :class:`NotConnected` subclass at once; the client keeps retrying in the
        background either way."""
        try:
            async with asyncio.timeout(timeout):
                if fail_fast:
                    await self._synced_or_hopeless()
                else:
                    await self._synced.wait()
        except TimeoutError:
            failure = self._runtime.last_failure
            cause = f": {failure.message}" if failure is not None else ""
            raise NotConnected(
                f"not synced within {timeout:g} s{cause}",
                failure.cause if failure is not None else "",
            ) from None
        self._raise_if_ended()
        failure = self._runtime.last_failure
        if not self._synced.is_set() and failure is not None:
            raise failure

    async def _synced_or_hopeless(self) -> None:
        waits = {
            asyncio.ensure_future(self._synced.wait()),
            asyncio.ensure_future(self._hopeless.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _raise_if_ended(self) -> None:
        connection = self.connection
        if connection.state is ConnectionState.CLOSED and connection.close_code is not None:
            reason = connection.last_error or "the connection ended"
            if connection.close_code == CloseCode.UNAUTHORIZED:
                raise DeviceRemoved(reason)
            raise ConnectionEnded(connection.close_code, reason)

    @property
    def connection_state(self) -> ConnectionState:
        """``self.connection.state``: CLOSED (with ``connection.last_error`` saying why) when
        the device was removed, its token is invalid, another connection took over or the app
        must be updated."""
        return self.connection.state

    async def background(self) -> None:
        """Close the connection (the app went to the background); :meth:`foreground` resumes."""
        await self._runtime.pause()

    async def foreground(self) -> None:
        """Reconnect after :meth:`background`."""
        await self._runtime.start()

    def suspend(self) -> lifecycle.Paused:
        """Synchronous :meth:`background` for a loop about to freeze (Kivy's ``on_pause`` on
        Android, client/lifecycle.py): store and ack what arrived, write the close frame, and
        let go of the profile so the push service may sync it meanwhile. :meth:`resume`."""
        paused = lifecycle.pause_now(self._runtime)
        self._suspended_at = lifecycle.data_version(self._runtime)
        if self._profile_lock is not None:
            self._profile_lock.release()
            self._profile_lock = None
        return paused

    async def resume(self, wait: float = 30.0) -> bool:
        """Take the profile back after :meth:`suspend` (waiting up to ``wait`` s for the push
        service to finish; ProfileInUse after that) and reconnect. False, without
        reconnecting, when another process changed the profile meanwhile: this client's
        state is stale, close it and :meth:`open` the profile again."""
        if self._profile_lock is None:
            self._profile_lock = await profilelock.acquire_async(self.profile, wait)
        if lifecycle.data_version(self._runtime) != self._suspended_at:
            return False
        await self._runtime.start()
        return True

    @property
    def search_mode(self) -> str:
        """``"fts5"``, or ``"scan"`` on an SQLite without FTS5 (slower, same results)."""
        return self._store.search_mode

    async def close(self) -> None:
        """Stop the runtime, flush what is pending, close the store."""
        if self._closed:
            return
        self._closed = True
        self._social_close()
        self._channels_close()
        for task in list(self._background):
            task.cancel()
        await self._backup.stop()
        await self._media.close()
        await self._runtime.close()
        await self._rest.aclose()
        self._store.close()
        if self._profile_lock is not None:
            self._profile_lock.release()
            self._profile_lock = None

    # ------------------------------------------------------------------ messages

    async def send_text(
        self, conv_id: str, body: str, reply_to: uuid.UUID | None = None
    ) -> Message:
        """Store a new message as ``sending`` and send it as soon as the server is there."""
        self._check_open()
        check_text(body)  # empty_message, payload_too_large
        if not self._store.has_conversation(conv_id):
            raise ClientError("not_found", "no such conversation")
        content = Text(body=body, reply_to=reply_to)
        message_id = await self._send(conv_id, content)
        message = self._just_added.get(message_id) or self._store.message(message_id)
        assert message is not None  # stored by the flush above
        return message

    async def react(
        self, conv_id: str, target: uuid.UUID, emoji: str, remove: bool = False
    ) -> None:
        """Add (or remove) an emoji reaction to message ``target``."""
        self._check_open()
        check_emoji(emoji)  # one emoji, nothing else
        await self._send(conv_id, Reaction(target=target, emoji=emoji, remove=remove))

    async def _send(self, conv_id: str, content: Content) -> uuid.UUID:
        if self.is_channel(conv_id):  # a channel's log holds signed posts only
            raise ClientError("not_supported", "a channel takes posts only (Client.post)")
        if not isinstance(content, ProfileKey):
            await self._before_send(conv_id)  # profile key first, typing off
        message_id = new_message_id()  # time-ordered, as send_texts' (client/ids.py)
        payload = encode_bound(content, conv_id, message_id)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ClientError("payload_too_large", "the message is too large")
        item = engine.OutboxItem(message_id, conv_id, payload)
        self._engine.send(item, content, _now_ms(), self._runtime.now())
        await self._runtime.flush()
        self._runtime.wake()
        return item.id

    async def retry(self, message_id: uuid.UUID) -> None:
        """Send a FAILED message again (same id)."""
        self._check_open()
        message = self._store.message(message_id)
        if message is None or not message.is_own or message.status != MessageStatus.FAILED:
            raise ClientError("not_failed", "only a failed own message can be retried")
        if self.is_channel(message.conv_id):  # client/channels.py
            await self.retry_post(message_id)
            return
        if await self._retry_attachment(message):
            return
        payload = encode_bound(
            Text(body=message.body, reply_to=message.reply_to), message.conv_id, message_id
        )
        item = engine.OutboxItem(message_id, message.conv_id, payload)
        self._engine.retry(item, self._runtime.now())
        await self._runtime.flush()
        self._runtime.wake()

    async def mark_read(self, conv_id: str) -> None:
        """Everything received in ``conv_id`` up to now is read."""
        self._check_open()
        if self.is_channel(conv_id):  # client/channels.py
            return self.channel_mark_read(conv_id)
        # Up to the cursor: everything below it is stored (and shown); above it may be a gap.
        seq = self._engine.cursors.get(conv_id, 0)
        if seq > self._store.read_upto(conv_id):
            self._engine.read(conv_id, seq)
            await self._runtime.flush()

    async def history(self, conv_id: str, before: int | None = None, limit: int = 50) -> Page:
        """A page of messages older than ``before`` (the newest page when None); past the
        local history it continues from the vault (same shape, more latency)."""
        if self.is_channel(conv_id):  # a channel's older posts come from its log
            return await self.channel_history(conv_id, before, max(1, limit))
        page = self._store.history(conv_id, before, max(1, limit))
        return await self._backup.history(conv_id, before, max(1, limit), page)

    async def page_around(self, conv_id: str, message_id: uuid.UUID, limit: int = 50) -> Page:
        """A page with ``message_id`` in the middle (to jump to a search hit)."""
        page = self._store.page_around(conv_id, message_id, max(1, limit))
        if page is None:
            raise ClientError("not_found", "no such message in this conversation")
        return page

    async def message(self, message_id: uuid.UUID) -> Message | None:
        return self._store.message(message_id)

    async def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages whose body contains every word of ``query``, most recently stored first."""
        return self._store.search(query, max(1, limit))

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("closed", "the client is closed")

    def _on_unauthorized(self) -> None:
        """A REST call was answered 401: the device was removed or its token is invalid. The
        engine stops reconnecting (CLOSED) and says why."""
        self._engine.unauthorized()
        if not self._closed:
            self._in_background(self._runtime.flush())

    def _on_applied(self, effects: list[engine.Effect], changes: Changes) -> None:
        """Turn an applied batch of engine effects into client state and events."""
        for effect in effects:
            if isinstance(effect, engine.ConnectionNotice):
                state = _STATES[effect.phase]
                self.connection = Connection(state, effect.retry_in, effect.error, effect.code)
                failure = self._runtime.last_failure
                if state is ConnectionState.CLOSED:
                    self._synced.set()  # wait_synced wakes up and raises ConnectionEnded
                elif state is not ConnectionState.ONLINE:
                    self._synced.clear()
                    if (
                        failure is not None
                        and failure.cause in _HOPELESS
                        and not self._runtime.ever_connected
                    ):
                        self._hopeless.set()
                elif effect.phase is engine.Phase.REPLAY:
                    self._in_background(self.refresh_all())
                self._emit(ConnectionChanged(self.connection))
            elif isinstance(effect, engine.SyncedNotice):
                self._synced.set()
                self._in_background(self._channels_sync())  # client/channels.py
                self._in_background(self._catch_up_receipts())
                self._in_background(self._upload_keys())
                self._emit(Synced())
        self._identity_changes()
        if self._store.keys.consumed >= PREKEY_CHECK_EVERY:  # new sessions used our prekeys
            self._store.keys.consumed = 0
            self._in_background(self._upload_keys())
        for sender, conv_id, message_id in changes.undecryptable:
            self._emit(Undecryptable(sender, conv_id, message_id))
        synced = any(isinstance(e, engine.SyncedNotice) for e in effects)
        self._social_applied(changes, synced)  # blocked senders, profile keys (social.py)
        self._media.on_added(changes.added)  # small images download at once
        self._just_added = {}
        if not self._subscribers:
            self._unsent.clear()  # what changed now is not in these copies
            return
        added = set(changes.added)
        touched = Counter(changes.updated)
        built = {i: m for i, m in changes.built.items() if i not in touched}
        for message in self._messages(changes.added, built):
            self._just_added[message.id] = message
            self._emit(MessageAdded(message))
            if self._push.should_notify(message):
                self._emit_notify(message)
            if message.id in built:  # a new own text, sending
                self._unsent[message.id] = message
        updated = list(dict.fromkeys(i for i in changes.updated if i not in added))
        # Accepted alone changed only seq and status: the message as its last event showed
        # it, with those (and the sender's name as it is now), is what the row reads.
        accepted: dict[uuid.UUID, Message] = {}
        name: str | None = None
        for message_id in updated:
            shown = self._unsent.pop(message_id, None)
            sent = changes.sent.get(message_id)
            if shown is None or sent is None or touched[message_id] != 1 or shown.attachments:
                continue
            if name is None:
                name = self._store.display_name(shown.sender_id)
            seq, status = sent
            accepted[message_id] = dataclasses.replace(
                shown, seq=seq, status=status, sender_name=name
            )
        for message in self._messages(updated, accepted):
            self._emit(MessageUpdated(message))
        self._conversations_changed(changes.conversations)

    def _messages(self, ids: list[uuid.UUID], ready: dict[uuid.UUID, Message]) -> list[Message]:
        """The messages ``ids`` that exist, in order: those in ``ready`` as they are, the
        others as the store reads them."""
        missing = [i for i in ids if i not in ready]
        if not missing:
            return [ready[i] for i in ids]
        read = {m.id: m for m in self._store.messages(missing)}
        return [m for i in ids if (m := ready.get(i) or read.get(i)) is not None]

    def _identity_changes(self) -> None:
        """Contacts whose identity key changed: a line in the direct chat, and an event."""
        for change in self._store.keys.take_changes():
            line = self._store.identity_line(change.account_id, change.at)
            name = self._store.username(change.account_id) or change.account_id
            conv_id = None if line is None else line[0]
            self._emit(IdentityChanged(change.account_id, name, conv_id, change.was_verified))
            if line is not None:
                for message in self._store.messages([line[1]]):
                    self._emit(MessageAdded(message))
                self._emit_conversation(line[0])

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        """Run REST catch-up work without blocking the runtime; a failure waits for the next
        connection to try again."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, ClientError):
            log.error("client background work failed", exc_info=error)

    async def _catch_up_receipts(self) -> None:
        """Receipts relayed while this device was offline are lost; ask for the watermarks of
        every conversation where own messages still wait for them."""
        for conv_id in self._store.awaiting_receipts():
            try:
                self._check_open()
                marks = await self._rest.call(routes.RECEIPTS, list[Watermark], conv=conv_id)
            except ServerRefused:
                continue
            self._record_marks(marks)  # their times, for message details
            self._engine.watermarks(marks)
        await self._runtime.flush()
