"""The public client API: :class:`Client` (see docs/client-api.md).

A profile directory holds ``tidings.db`` (the local store, with the account) and ``token`` (the
device token, mode 0600). Conversations and members come from the server's REST API; messages
come through the engine and runtime. Everything here runs on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import secrets
import time
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec

from tidings.crypto import IdentityKeyPair, PrivateKey
from tidings.crypto.vault import PRODUCTION_LIMITS, KdfLimits, KdfParams
from tidings.protocol import MAX_PAYLOAD_BYTES, ErrorCode, Watermark, rest, routes
from tidings.protocol import keys as wire
from tidings.protocol import push as push_wire
from tidings.protocol.close import CloseCode
from tidings.protocol.content import Content, ProfileKey, Reaction, Text

from . import integrity, lifecycle, profilelock, provisioning, tls
from .backup.service import BackupService, BackupStatus
from .channels import ChannelFeatures
from .core import engine
from .core.payload import encode_bound
from .core.sealing import EndToEnd
from .core.types import EngineSettings
from .errors import (
    CAUSE_DNS,
    CAUSE_REFUSED,
    CAUSE_TLS,
    CAUSE_WRONG_SCHEME,
    ClientError,
    ConnectionEnded,
    ConnectionLost,
    DeviceRemoved,
    NotConnected,
    ProfileNotFound,
    ServerRefused,
    ServerTimeout,
)
from .features.bulk import BulkSending
from .features.everyday import EverydayFeatures
from .features.social import SocialFeatures
from .features.validation import check_emoji, check_text
from .mediaapi import AttachmentFeatures
from .mediaflow import MediaFlow
from .push import NotificationSetting, PushRegistration, PushState
from .rest import HTTP_TIMEOUT, Rest, approve_link, poll_link, request_link, retrying
from .runtime import Runtime
from .store import Changes, LocalStore, private_dir
from .types import (
    Account,
    ClientEvent,
    Connection,
    ConnectionChanged,
    ConnectionState,
    Conversation,
    ConversationUpdated,
    IdentityChanged,
    Message,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
    Notify,
    Page,
    SearchHit,
    Synced,
    Undecryptable,
)

log = logging.getLogger("tidings.client")

DB_NAME = "tidings.db"
TOKEN_NAME = "token"  # noqa: S105 - the file name, not a secret
#: a sign-up under way: written with the token before the first request, removed once done
SIGNUP_NAME = "signup.json"
#: connect failures that waiting cannot fix: :meth:`Client.wait_synced` with ``fail_fast``
#: raises at the first one
_HOPELESS = frozenset({CAUSE_REFUSED, CAUSE_DNS, CAUSE_WRONG_SCHEME, CAUSE_TLS})
#: seconds a new device waits for its link code to be approved
LINK_TIMEOUT = 600.0
#: one-time prekeys used by new sessions after which the server's count is checked (refill)
PREKEY_CHECK_EVERY = 10

_T = TypeVar("_T")

_STATES = {
    engine.Phase.IDLE: ConnectionState.OFFLINE,
    engine.Phase.OFFLINE: ConnectionState.OFFLINE,
    engine.Phase.CONNECTING: ConnectionState.CONNECTING,
    engine.Phase.HANDSHAKE: ConnectionState.CONNECTING,
    engine.Phase.REPLAY: ConnectionState.ONLINE,
    engine.Phase.LIVE: ConnectionState.ONLINE,
    engine.Phase.CLOSED_FATAL: ConnectionState.CLOSED,
}


@dataclass(frozen=True)
class ClientConfig:
    """Tunables of a :class:`Client`; the defaults suit a desktop or a phone in the foreground
    (a push-woken phone wants other engine timings)."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    #: seconds for one REST call
    http_timeout: float = HTTP_TIMEOUT
    #: bytes of downloaded attachments kept in the profile (least recently used go first)
    media_cache_bytes: int = 512 * 1024 * 1024
    #: images from others up to this size are downloaded as soon as they arrive (0: never)
    auto_download_bytes: int = 4 * 1024 * 1024
    #: messages per conversation kept on the device once backup is on; older ones are removed
    #: locally after they are safely in the vault and load from it when scrolled to
    keep_messages: int = 1000
    #: seconds between background vault uploads (changes wake it sooner)
    backup_interval: float = 30.0
    #: what Argon2id params the client accepts from the server (tests may lower the floor)
    vault_limits: KdfLimits = PRODUCTION_LIMITS
    #: params for a new enrolment (None: the defaults of tidings.crypto.vault)
    vault_params: KdfParams | None = None
    #: allow plain http:// and ws:// to a host that is not loopback (client/tls.py)
    insecure: bool = False
    #: a PEM file of CA certificates to trust instead of certifi's (a private CA, a
    #: self-signed server)
    ca_file: str | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_token() -> str:
    """A device token made on this side (``<key>.<secret>``, protocol.rest.DeviceToken)."""
    return f"{secrets.token_urlsafe(12)}.{secrets.token_urlsafe(32)}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) durably: a sign-up may be retried from it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class SafetyNumber:
    """What :meth:`Client.safety` knows about the safety number shared with ``username``."""

    username: str
    number: str
    verified: bool
    #: when the contact's identity key was last fetched from the server (ms), if known
    checked_at: int | None
    #: False: the server could not be reached and this is the stored key's number
    online: bool


def _ws_url(server_url: str) -> str:
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + routes.WEBSOCKET_PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + routes.WEBSOCKET_PATH
    raise ClientError("bad_url", "the server URL must start with http:// or https://")


class _Subscription:
    """One subscriber of :meth:`Client.events`: its own unbounded queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ClientEvent] = asyncio.Queue()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self.queue.get()


class Client(AttachmentFeatures, EverydayFeatures, SocialFeatures, ChannelFeatures, BulkSending):
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
        self._subscribers: weakref.WeakSet[_Subscription] = weakref.WeakSet()
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

    # ------------------------------------------------------------------ profiles

    @classmethod
    async def create_account(
        cls,
        profile: Path,
        server_url: str,
        username: str,
        device_name: str = "primary",
        config: ClientConfig | None = None,
        invite: str | None = None,
    ) -> Client:
        """Register ``username`` on the server and write a new profile at ``profile``."""
        profile = Path(profile)
        token = _pending_signup(profile, server_url, username)
        _ws_url(server_url)
        config = config or ClientConfig()
        tls.check_url(server_url, config.insecure)
        context = tls.ssl_context(config.ca_file)
        fresh = token is None
        if token is None:
            # The token is chosen here and kept in the profile before anything goes out: a
            # sign-up whose answer was lost is repeated with it and gets the same account.
            token = _new_token()
            private_dir(profile)
            signup = {"server_url": server_url, "username": username}
            _write_private(profile / SIGNUP_NAME, json.dumps(signup))
            _write_private(profile / TOKEN_NAME, token)
        body = rest.CreateAccount(
            username=username, device_name=device_name, token=token, invite=invite
        )
        anonymous = Rest(server_url, timeout=config.http_timeout, verify=context)
        maybe_reached = not fresh

        async def sign_up() -> rest.AccountCreated:
            nonlocal maybe_reached
            try:
                return await anonymous.call(routes.CREATE_ACCOUNT, rest.AccountCreated, body)
            except (ConnectionLost, ServerTimeout):
                maybe_reached = True  # the server may have created it: keep the token
                raise

        try:
            created = await retrying(sign_up)
        except ServerRefused:
            _remove_profile_files(profile)  # the name is taken: nothing to retry
            raise
        except NotConnected as exc:
            if not maybe_reached:  # no request reached the server: leave no trace
                _remove_profile_files(profile)
                raise
            exc.message += (
                "; the sign-up is kept in the profile: run the same command again to finish it"
            )
            raise
        finally:
            await anonymous.aclose()
        account = Account(created.account_id, created.username, created.device_id, server_url)
        if created.token != token:  # a server that makes tokens itself
            _write_private(profile / TOKEN_NAME, created.token)
        store = LocalStore(profile / DB_NAME)
        store.set_account(account)
        store.keys.set_identity(IdentityKeyPair.generate())
        (profile / SIGNUP_NAME).unlink(missing_ok=True)
        tls.save(profile, config.insecure, config.ca_file)
        client = cls(profile, store, account, created.token, config)
        await client._upload_keys()
        return client

    @classmethod
    async def link_device(
        cls,
        profile: Path,
        server_url: str,
        device_name: str = "linked",
        on_code: Callable[[str], None] | None = None,
        patience: float = LINK_TIMEOUT,
        config: ClientConfig | None = None,
    ) -> Client:
        """Link a new device to an existing account (docs/e2ee.md): ``on_code`` gets the link
        code to approve on a device of the account (:meth:`approve_device`); returns the new
        device's client (not started) once approved. ``device_name`` is the approver's to
        choose on the server; it is kept here only as a default for the user."""
        profile = Path(profile)
        if (profile / TOKEN_NAME).exists():
            raise ClientError("profile_exists", f"{profile} already holds an account")
        _ws_url(server_url)
        config = config or ClientConfig()
        tls.check_url(server_url, config.insecure)
        context = tls.ssl_context(config.ca_file)
        ephemeral = PrivateKey.generate()
        public = ephemeral.public_key().serialize()
        # Chosen before the first request: every step can be repeated after a lost answer
        # and ends in the same device (protocol.keys.NewProvisioning).
        secret, token = secrets.token_urlsafe(32), _new_token()
        http = Rest(server_url, timeout=config.http_timeout, verify=context)
        try:
            request = await retrying(lambda: request_link(http, public, secret, token))
            if on_code is not None:
                on_code(provisioning.link_code(request.id, public))
            try:
                result = await poll_link(http, request, patience)
            except TimeoutError:
                raise ClientError(
                    "link_timeout", "the link code was not approved in time"
                ) from None
        finally:
            await http.aclose()
        try:
            message = provisioning.open_sealed(result.sealed, ephemeral)
        except provisioning.LinkCodeError as exc:
            raise ClientError("bad_link", str(exc)) from None
        if message.account_id != result.account_id:
            raise ClientError("bad_link", "the provisioning message is for another account")
        private_dir(profile)
        account = Account(result.account_id, result.username, result.device_id, server_url)
        token = result.token or token  # empty: the server took the one chosen here
        _write_private(profile / TOKEN_NAME, token)
        tls.save(profile, config.insecure, config.ca_file)
        store = LocalStore(profile / DB_NAME)
        store.set_account(account)
        store.keys.set_identity(IdentityKeyPair.deserialize(message.identity))
        client = cls(profile, store, account, token, config)
        try:
            await client._upload_keys(first_link=True)
        except ServerRefused as exc:
            # The identity key we were given is not the account's: this device could never
            # publish keys (nobody could write to it). Fail the link and leave no profile.
            await client.close()
            _remove_profile_files(profile)
            raise ClientError(
                "bad_link",
                "the identity key from the approving device is not the account's"
                f" (the server refused the key upload: {exc.code})",
            ) from None
        if message.vault_key is not None and message.vault_wrapped is not None:
            await client._adopt_vault(message.vault_key, message.vault_wrapped)
        return client

    async def approve_device(self, code: str, device_name: str = "linked") -> int:
        """Approve a new device of this account from its link code; returns its device id.
        The account's identity key travels sealed to the new device (the server cannot read
        it)."""
        self._check_open()
        try:
            provisioning_id, ephemeral = provisioning.parse_link_code(code)
            message = provisioning.ProvisionMessage(
                account_id=self.account.account_id,
                username=self.account.username,
                identity=self._store.keys.get_identity_key_pair().serialize(),
                vault_key=self._backup.keys.vault_key if self._backup.keys else None,
                vault_wrapped=self._backup.keys.wrapped if self._backup.keys else None,
            )
            sealed = provisioning.seal(message, ephemeral)
        except provisioning.LinkCodeError as exc:
            raise ClientError("bad_link", str(exc)) from None
        body = wire.ApproveDevice(device_name=device_name, ephemeral_key=ephemeral, sealed=sealed)
        # A repeated approval with the same sealed message answers the same device.
        approved = await retrying(lambda: approve_link(self._rest, provisioning_id, body))
        return approved.device_id

    async def remove_device(self, device_id: int) -> None:
        """Remove another device of this account (``DELETE /v1/devices/{id}``): its token
        stops working and its connection ends (close code 4401)."""
        self._check_open()
        await self._rest.send(routes.REMOVE_DEVICE, device_id=device_id)

    async def _upload_keys(self, first_link: bool = False) -> None:
        """Publish this device's keys if the server has none, refill one-time prekeys and
        rotate the signed prekey when due (after account creation and every sync). A failure
        is logged and tried again after the next sync, except the first upload of a linked
        device (``first_link``) refused as a ``conflict`` (its identity key differs from the
        account's): that :class:`ServerRefused` is raised."""
        keys = self._store.keys
        try:
            async with self._key_upload:
                counts = await self._rest.call(routes.KEY_COUNTS, wire.KeyCounts)
                if counts.signed_prekey_id is None:
                    counts = await self._rest.call(
                        routes.UPLOAD_KEYS, wire.KeyCounts, keys.initial_upload()
                    )
                upload = keys.maintenance_upload(counts)
                if upload is not None:
                    await self._rest.call(routes.UPLOAD_KEYS, wire.KeyCounts, upload)
        except ClientError as exc:
            if first_link and isinstance(exc, ServerRefused) and exc.code == ErrorCode.CONFLICT:
                raise
            log.info("uploading keys failed (%s); trying again after the next sync", exc.code)

    @classmethod
    async def open(cls, profile: Path, config: ClientConfig | None = None) -> Client:
        """Open an existing profile. Raises :class:`ProfileNotFound` if it holds no account,
        :class:`ProfileCorrupt` if its database is damaged (the message says what to run)."""
        profile = Path(profile)
        token_path = profile / TOKEN_NAME
        if not (profile / DB_NAME).exists() or not token_path.exists():
            raise ProfileNotFound(f"no account in {profile}")
        lock = profilelock.acquire(profile)  # ProfileInUse; before migrations touch the store
        try:
            # the full integrity check runs beside the app's start (client/integrity.py)
            store = LocalStore(profile / DB_NAME, integrity="later")
            integrity.check_in_background(profile / DB_NAME)
            account = store.account()
            if account is None:
                store.close()
                raise ProfileNotFound(f"no account in {profile}")
            if not store.keys.has_identity():  # a profile from before end-to-end encryption
                store.keys.set_identity(IdentityKeyPair.generate())
            return cls(profile, store, account, token_path.read_text().strip(), config)
        finally:
            lock.release()  # the client holds its own reference

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

    def events(self) -> AsyncIterator[ClientEvent]:
        """A new subscription: every event from now on, in order."""
        subscription = _Subscription()
        self._subscribers.add(subscription)
        return subscription

    # ------------------------------------------------------------------ conversations

    async def conversations(self) -> list[Conversation]:
        """Conversations I am a member of, newest activity first."""
        return self._store.conversations()

    async def conversation(self, conv_id: str) -> Conversation:
        found = self._store.conversation(conv_id)
        if found is None:
            conv = await self._rest.call(routes.CONVERSATION, rest.Conversation, conv=conv_id)
            self._save(conv)
            found = self._store.conversation(conv_id)
        if found is None:
            raise ClientError("not_found", "no such conversation")
        return found

    async def open_direct(self, username: str) -> Conversation:
        """The direct conversation with ``username``, created on the server if needed."""
        self._check_open()
        body = rest.CreateDirect(username=username)
        conv = await self._rest.call(routes.CREATE_DIRECT, rest.Conversation, body)
        return self._save(conv)

    async def create_group(self, title: str, usernames: Sequence[str]) -> Conversation:
        self._check_open()
        body = rest.CreateGroup(title=title, members=list(usernames))
        return self._save(await self._rest.call(routes.CREATE_GROUP, rest.Conversation, body))

    async def add_members(self, conv_id: str, usernames: Sequence[str]) -> Conversation:
        self._check_open()
        body = rest.AddMembers(usernames=list(usernames))
        conv = await self._rest.call(routes.ADD_MEMBERS, rest.Conversation, body, conv=conv_id)
        return self._save(conv)

    async def remove_member(self, conv_id: str, username: str) -> Conversation:
        self._check_open()
        conv = await self._rest.call(
            routes.REMOVE_MEMBER, rest.Conversation, conv=conv_id, username=username
        )
        self._e2ee.rotate(conv_id)  # the removed member must not read what follows
        return self._save(conv)

    async def leave_group(self, conv_id: str) -> None:
        self._check_open()
        await self._rest.send(routes.LEAVE_GROUP, conv=conv_id)
        self._e2ee.rotate(conv_id)
        self._store.left_conversation(conv_id)
        self._engine.members_changed(conv_id, frozenset())
        await self._runtime.flush()
        self._emit_conversation(conv_id)

    async def group_adds(self) -> rest.GroupAdds:
        """Who may add this account to a group: ``everyone`` or ``contacts`` (the accounts it
        shares a direct conversation with in which it has sent a message)."""
        self._check_open()
        return (await self._rest.call(routes.SETTINGS, rest.AccountSettings)).group_adds

    async def set_group_adds(self, who: rest.GroupAdds) -> rest.GroupAdds:
        """Let ``everyone`` or only ``contacts`` add this account to groups; others adding it
        get ``forbidden``. Returns the setting in force."""
        self._check_open()
        body = rest.UpdateSettings(group_adds=who)
        return (
            await self._rest.call(routes.UPDATE_SETTINGS, rest.AccountSettings, body)
        ).group_adds

    def _save(self, conv: rest.Conversation) -> Conversation:
        members = self._store.save_conversation(conv)
        self._push.saved(conv)
        self._engine.members_changed(conv.id, members)
        self._e2ee.set_members(conv.id, members)
        self._runtime.wake()  # promotions the new member list allows
        found = self._store.conversation(conv.id)
        assert found is not None  # just saved
        self._emit(ConversationUpdated(found))
        return found

    async def _refresh(self, conv_id: str) -> None:
        """Reload one conversation's info and members from the server (for the engine's
        RefreshConversation; failures are reported to the engine, never raised)."""
        try:
            self._check_open()
            conv = await self._rest.call(routes.CONVERSATION, rest.Conversation, conv=conv_id)
        except ConnectionEnded:
            return  # the engine knows: nothing will be refreshed any more
        except ServerRefused as exc:
            if exc.status in (403, 404):  # removed, or it never was ours
                self._store.left_conversation(conv_id)
                self._engine.members_changed(conv_id, frozenset())
                self._emit_conversation(conv_id)
            else:
                self._engine.refresh_failed(conv_id)
            return
        except ClientError:
            self._engine.refresh_failed(conv_id)
            return
        self._save(conv)

    async def refresh_all(self) -> None:
        """Reload every conversation's info and members from the server (one request)."""
        self._check_open()
        for conv in await self._rest.call(routes.CONVERSATIONS, list[rest.Conversation]):
            self._save(conv)

    # ------------------------------------------------------------------ push, notifications

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
        subscription = _Subscription()
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
        message_id = uuid.uuid4()
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

    # ------------------------------------------------------------------ backup (client/backup)

    async def search_older(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Search the history kept only in the vault (downloads and opens its pages)."""
        self._check_open()
        return await self._backup.search_older(query, max(1, limit))

    async def enable_backup(self, passphrase: str) -> None:
        """Enrol the account's history vault under ``passphrase`` (``weak_passphrase`` if the
        estimate is too low) and start uploading in the background. If the account already
        has a vault, its key is adopted when ``passphrase`` opens it (``BackupExists``
        otherwise: change the passphrase or :meth:`reset_backup`)."""
        self._check_open()
        await self._backup.enable(passphrase)

    async def reset_backup(self) -> None:
        """Delete the account's vault on the server (history kept only there is lost) and
        turn backup off on this device; :meth:`enable_backup` starts a new one."""
        self._check_open()
        await self._backup.reset()

    async def backup_status(self) -> BackupStatus:
        return await self._backup.status()

    async def backup_now(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Upload what changed now (and apply local retention); pages uploaded."""
        self._check_open()
        return await self._backup.upload_now(on_progress)

    async def change_passphrase(self, old: str, new: str) -> None:
        """Re-wrap the vault key under a new passphrase (``wrong_passphrase`` for a wrong
        old one)."""
        self._check_open()
        await self._backup.change_passphrase(old, new)

    async def export_backup(
        self, path: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Write the whole vault to ``path`` (readable with the passphrase alone)."""
        self._check_open()
        return await self._backup.export(Path(path), on_progress)

    async def import_backup(self, path: Path, passphrase: str) -> int:
        """Add the messages of an export file of this account; how many were new."""
        self._check_open()
        return await self._backup.import_(Path(path), passphrase)

    async def _adopt_vault(self, vault_key: bytes, wrapped: bytes) -> None:
        from .backup.recovery import adopt_vault

        self._backup.adopt(vault_key, wrapped)
        await adopt_vault(
            self._store, self._backup.api, vault_key, wrapped,
            keep=self.config.keep_messages, restore=False,
        )  # fmt: skip

    async def safety(self, username: str) -> SafetyNumber:
        """The safety number shared with ``username``, refreshed from the server when it can
        be reached; offline, the number of the identity key stored for them, with when it
        was last fetched from the server (``checked_at``). Raises :class:`NotConnected` when
        offline and no key is stored for them."""
        self._check_open()
        username = username.removeprefix("@")
        try:
            number = await self.safety_number(username)
            online = True
        except NotConnected:
            account_id = self._store.account_id_of(username)
            if account_id is None or self._store.keys.known_identity(account_id) is None:
                raise
            number, online = self._e2ee.safety_number(account_id), False
        else:
            account_id = self._store.account_id_of(username) or await self._account_id(username)
        known = self._store.keys.known_identity(account_id)
        verified = known is not None and known.verified
        checked_at = None if known is None else known.checked_at
        return SafetyNumber(username, number, verified, checked_at, online)

    async def safety_number(self, username: str) -> str:
        """The 60-digit safety number shared with ``username`` (the same on both sides and on
        every device of either account; libsignal's numeric fingerprint, 5200 iterations)."""
        account_id = await self._account_id(username)
        await self._runtime.drive(self._e2ee.learn_identity(account_id))
        return self._e2ee.safety_number(account_id)

    async def verify(self, username: str) -> None:
        """Mark ``username``'s current identity key as verified (safety numbers compared).
        Should it change later, sending to them stops until they are verified again."""
        account_id = await self._account_id(username)
        await self._runtime.drive(self._e2ee.learn_identity(account_id))
        self._store.keys.set_verified(account_id, True)

    async def unverify(self, username: str) -> None:
        """Take a verification back (a changed key then no longer stops sending)."""
        self._store.keys.set_verified(await self._account_id(username), False)

    async def is_verified(self, username: str) -> bool:
        known = self._store.keys.known_identity(await self._account_id(username))
        return known is not None and known.verified

    async def _account_id(self, username: str) -> str:
        self._check_open()
        username = username.removeprefix("@")
        if username == self.account.username:
            raise ClientError("not_available", "a safety number is shared with someone else")
        user = await self._rest.call(routes.USER, rest.User, username=username)
        return user.account_id

    async def _members_of(self, conv_id: str) -> tuple[str, frozenset[str]]:
        """(kind, member account ids) of a conversation, for encrypting to it."""
        found = self._store.conversation(conv_id)
        if found is None or not found.members:
            found = await self.conversation(conv_id)
            if not found.members:
                await self._refresh(conv_id)
                found = self._store.conversation(conv_id) or found
        return found.kind, frozenset(m.account_id for m in found.members)

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


def _remove_profile_files(profile: Path) -> None:
    """Take back the token and the database a failed link or sign-up wrote (the directory
    stays)."""
    for name in (TOKEN_NAME, SIGNUP_NAME, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (profile / name).unlink(missing_ok=True)


def _pending_signup(profile: Path, server_url: str, username: str) -> str | None:
    """The token of a sign-up of ``username`` at ``server_url`` that was started in
    ``profile`` and never finished (its answer was lost), to repeat it with; None for a
    fresh profile. Raises ``profile_exists`` for a profile that holds something else."""
    token_path = profile / TOKEN_NAME
    if not token_path.exists():
        return None
    try:
        signup = json.loads((profile / SIGNUP_NAME).read_text())
    except (OSError, ValueError):
        signup = None
    if signup != {"server_url": server_url, "username": username}:
        raise ClientError("profile_exists", f"{profile} already holds an account")
    return token_path.read_text().strip()


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`Client.sync_once` brought: others' new messages, those of them that should
    alert on this device, and whether it finished (False: the rest comes next time)."""

    arrived: tuple[Message, ...]
    notify: tuple[Message, ...]
    complete: bool


def _registration(status: push_wire.PushStatus) -> PushRegistration | None:
    r = status.registration
    if r is None:
        return None
    return PushRegistration(r.platform, r.token, r.p256dh, r.auth, r.topic, status.updated_at)
