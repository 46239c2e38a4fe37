"""Broadcast channels for :class:`~tidings.client.Client` (a mixin; docs/client-api.md
"Channels", docs/e2ee.md "Channels"). Posts are signed, not end-to-end encrypted.

- **Posting.** A post (id, the author's ts, the content) is signed with the account's identity
  key (XEdDSA over :func:`tidings.protocol.channels.signed_bytes`) and stored as ``sending``
  *before* the request; a post without an answer is resent with the same bytes (the id is the
  idempotency key) at every sync and with backoff, so a post the user made is never lost.
- **Reading.** Live posts come as ``ChannelPosted`` frames (the runtime hands them here, not to
  the engine); on every sync each channel is read from its cursor (``?after=``), or, after a
  long absence, its newest page first; older pages are fetched when ``history`` scrolls past the
  stored ones. A post is stored once per id and per seq.
- **Verifying.** Every post is checked against the channel's admins (their identity keys from
  the key directory, cached) before it is shown as genuine; an altered, unsigned or
  non-admin post is stored with ``verified=False`` ("could not verify"). A removed admin's
  posts from before the removal still verify on devices that saw the admin
  (client/channel_store.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidings.protocol import channels as wire
from tidings.protocol import rest, routes

from . import channel_store as cs
from .channel_sync import PAGE, RESEND_BASE, ChannelSync, now_ms
from .errors import ClientError, Forbidden, NotFound
from .store import UNSENT_ORD
from .types import ClientEvent, Message, Page

if TYPE_CHECKING:
    from .rest import Rest
    from .runtime import Runtime
    from .store import LocalStore
    from .types import Account

log = logging.getLogger("tidings.client")


@dataclass(frozen=True)
class ChannelAdmin:
    account_id: str
    username: str
    role: str  # "owner" | "admin"


@dataclass(frozen=True)
class Channel:
    id: str
    title: str
    handle: str | None
    public: bool
    description: str
    owner: str
    admins: tuple[ChannelAdmin, ...]
    subscribers: int
    head: int
    #: the caller's role: "owner" | "admin" | "subscriber", None: not subscribed
    role: str | None
    notify: str  # "all" | "none"

    @property
    def is_admin(self) -> bool:
        return self.role in ("owner", "admin")


def _channel(info: wire.ChannelInfo) -> Channel:
    admins = tuple(ChannelAdmin(a.account_id, a.username, a.role) for a in info.admins)
    return Channel(
        info.id, info.title, info.handle, info.public, info.description, info.owner, admins,
        info.subscribers, info.head, info.role, info.notify,
    )  # fmt: skip


def _just_below(account_id: str) -> str:
    """A subscriber-page cursor right below ``account_id``. The list runs in byte order of
    account ids and starts after the cursor; server-made ids are ASCII, so no id sorts between
    this string and ``account_id``: the page's first row is that account if it subscribed."""
    if not account_id:
        return ""
    return account_id[:-1] + chr(max(ord(account_id[-1]) - 1, 0)) + "\x7f"


class ChannelFeatures(ChannelSync):
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _runtime: Runtime
        _rest: Rest
        _closed: bool

        def _check_open(self) -> None: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _in_background(self, work: Coroutine[None, None, None]) -> None: ...

    def _channels_init(self) -> None:
        self._channel_lock = asyncio.Lock()
        self._channel_resend: asyncio.TimerHandle | None = None
        self._channel_backoff = RESEND_BASE
        self._runtime.on_channel_post = self._channel_frame

    def _channels_close(self) -> None:
        if self._channel_resend is not None:
            self._channel_resend.cancel()
            self._channel_resend = None

    # ------------------------------------------------------------------ the channel API

    async def create_channel(
        self, title: str, *, handle: str | None = None, public: bool = False, description: str = ""
    ) -> Channel:
        """A new channel owned by this account; a ``handle`` makes sense for a public one."""
        self._check_open()
        body = wire.CreateChannel(
            title=title, public=public, handle=handle, description=description
        )
        return self._channel_saved(
            await self._rest.call(routes.CREATE_CHANNEL, wire.ChannelInfo, body)
        )

    async def channel_info(self, channel_id: str) -> Channel:
        """The channel as the server has it now (admins, subscriber count)."""
        self._check_open()
        info = await self._rest.call(routes.CHANNEL, wire.ChannelInfo, channel=channel_id)
        return self._channel_saved(info) if info.role is not None else _channel(info)

    async def find_channel(self, handle: str) -> Channel:
        """A public channel by its handle (``NotFound`` if there is none)."""
        self._check_open()
        info = await self._rest.call(
            routes.CHANNEL_BY_HANDLE, wire.ChannelInfo, handle=handle.lstrip("@")
        )
        return _channel(info)

    async def subscribe(self, channel_id: str, invite: str | None = None) -> Channel:
        """Subscribe to a public channel, or a private one with a live ``invite`` token."""
        self._check_open()
        body = wire.JoinChannel(invite=invite)
        info = await self._rest.call(routes.SUBSCRIBE, wire.ChannelInfo, body, channel=channel_id)
        return await self._joined(info)

    async def join_channel(self, link: str) -> Channel:
        """Join from a public handle (``@news`` or ``news``) or an invite link/token."""
        self._check_open()
        token = link.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1].rsplit("=", 1)[-1]
        if link.startswith("@") or (len(token) < 16 and "/" not in link):
            found = await self.find_channel(token)
            return await self.subscribe(found.id)
        info = await self._rest.call(routes.JOIN_BY_INVITE, wire.ChannelInfo, token=token)
        return await self._joined(info)

    async def _joined(self, info: wire.ChannelInfo) -> Channel:
        channel = self._channel_saved(info)
        try:  # its newest posts at once (the next sync retries a failure)
            await self._channel_catch_up(channel.id)
        except ClientError as exc:
            log.info("catching up with a new channel failed: %s", exc.message)
        return channel

    async def sync_channels(self) -> None:
        """Catch up with every subscribed channel now and resend own posts without an answer
        (the client does this by itself after every connect)."""
        await self._channels_sync()

    async def unsubscribe(self, channel_id: str) -> None:
        self._check_open()
        await self._rest.send(routes.UNSUBSCRIBE, channel=channel_id)
        with self._store.transaction():
            self._store.db.execute("UPDATE channels SET role = NULL WHERE id = ?", (channel_id,))
            self._store.db.execute(
                "UPDATE conversations SET is_member = 0 WHERE id = ?", (channel_id,)
            )
        self._channel_changed(channel_id)

    async def create_invite(self, channel_id: str) -> str:
        """A new invite token of a channel (admins); share it as a link."""
        self._check_open()
        return (
            await self._rest.call(routes.CREATE_INVITE, wire.ChannelInvite, channel=channel_id)
        ).token

    async def revoke_invite(self, channel_id: str, token: str) -> None:
        """The link no longer joins anybody (those who joined stay)."""
        self._check_open()
        await self._rest.send(routes.REVOKE_INVITE, channel=channel_id, token=token)

    async def add_channel_admin(self, channel_id: str, username: str) -> Channel:
        """Make a subscriber an admin (the owner does: ``Forbidden`` for anybody else).
        ``NotFound``: no such user; ``ClientError`` ``not_subscribed`` (admins come from the
        subscribers) or ``already_admin``. Nothing changes on a refusal."""
        self._check_open()
        name = username.strip().removeprefix("@")
        found = await self.channel_subscriber(channel_id, name)
        if found is None:
            raise ClientError("not_subscribed", f"@{name} is not subscribed to this channel")
        if found.role != "subscriber":
            raise ClientError("already_admin", f"@{name} is already an admin of this channel")
        info = await self._rest.call(
            routes.ADD_CHANNEL_ADMIN, wire.ChannelInfo, channel=channel_id, username=name
        )
        return self._channel_saved(info)

    async def remove_channel_admin(self, channel_id: str, username: str) -> Channel:
        """Make an admin a subscriber again (the owner does; the owner stays: ``Forbidden``).
        ``NotFound``: no such user; ``ClientError`` ``not_admin``."""
        self._check_open()
        name = username.strip().removeprefix("@")
        found = await self.channel_subscriber(channel_id, name)
        if found is None or found.role == "subscriber":
            raise ClientError("not_admin", f"@{name} is not an admin of this channel")
        info = await self._rest.call(
            routes.REMOVE_CHANNEL_ADMIN, wire.ChannelInfo, channel=channel_id, username=name
        )
        return self._channel_saved(info)

    async def channel_subscriber(self, channel_id: str, username: str) -> wire.Subscriber | None:
        """``username`` among the channel's subscribers (with the role), None if not
        subscribed; ``NotFound`` if there is no such user, ``Forbidden`` for a non-admin.
        Two small requests however many subscribe: the user's account id, then the
        subscriber page that starts right below it."""
        self._check_open()
        name = username.strip().removeprefix("@")
        if not name:
            raise ClientError("bad_username", "enter a username")
        try:
            user = await self._rest.call(routes.USER, rest.User, username=name)
        except NotFound as exc:
            raise NotFound(exc.code, f"there is no user @{name}", exc.status) from exc
        page = await self.channel_subscribers(
            channel_id, start=_just_below(user.account_id), limit=1
        )
        first = page.subscribers[0] if page.subscribers else None
        return first if first is not None and first.account_id == user.account_id else None

    async def channel_subscribers(
        self, channel_id: str, start: str | None = None, limit: int = 1000
    ) -> wire.SubscriberPage:
        """A page of the subscriber list (admins only: ``Forbidden`` for others)."""
        params: dict[str, str | int] = {"limit": limit}
        if start is not None:
            params["start"] = start
        return await self._get(
            routes.CHANNEL_SUBSCRIBERS, wire.SubscriberPage, params, channel=channel_id
        )

    async def set_channel_notify(self, channel_id: str, level: wire.ChannelNotify) -> Channel:
        """``all``: notify for every post; ``none`` (the default): muted."""
        self._check_open()
        body = wire.SetChannelNotify(level=level)
        info = await self._rest.call(
            routes.CHANNEL_NOTIFY, wire.ChannelInfo, body, channel=channel_id
        )
        return self._channel_saved(info)

    def channel(self, channel_id: str) -> Channel | None:
        """The channel as stored on this device (no request)."""
        db = self._store.db
        row = db.execute(
            "SELECT c.title, h.handle, h.public, h.description, h.owner, h.subscribers, h.head,"
            " h.role, h.notify FROM channels h JOIN conversations c ON c.id = h.id WHERE h.id = ?",
            (channel_id,),
        ).fetchone()
        if row is None:
            return None
        admins = tuple(
            ChannelAdmin(str(a), str(u), str(r))
            for a, u, r in db.execute(
                "SELECT a.account_id, COALESCE(u.username, a.account_id), a.role FROM"
                " channel_admins a LEFT JOIN users u ON u.account_id = a.account_id"
                " WHERE a.channel = ? AND a.removed_at IS NULL ORDER BY a.role = 'admin', a.rowid",
                (channel_id,),
            )
        )
        title, handle, public, description, owner, subscribers, head, role, notify = row
        return Channel(
            channel_id, title, handle, bool(public), description, owner, admins,
            subscribers, head, role, notify,
        )  # fmt: skip

    def is_channel(self, conv_id: str) -> bool:
        return cs.is_channel(self._store.db, conv_id)

    async def post(self, channel_id: str, text: str) -> Message:
        """Sign and post ``text``. Stored as ``sending`` first; ``delivered`` once in the
        channel's log; resent on failure. ``Forbidden`` (nothing stored) for a non-admin."""
        self._check_open()
        known = self.channel(channel_id)
        if known is not None and not known.is_admin:
            raise Forbidden("forbidden", "only the channel's admins post", 403)
        content = wire.encode_content(text)
        if len(content) > wire.MAX_POST_BYTES:
            raise ClientError("payload_too_large", "a post holds at most 16 KiB of text")
        post_id, ts = uuid.uuid4(), now_ms()
        identity = self._store.keys.get_identity_key_pair()
        signature = identity.calculate_signature(
            wire.signed_bytes(channel_id, post_id, ts, content)
        )
        db = self._store.db
        with self._store.transaction():
            db.execute(
                "INSERT INTO channel_posts VALUES (?, ?, NULL, ?, ?, ?, 0, ?, ?, 1, 1)",
                (
                    post_id.hex,
                    channel_id,
                    self.account.account_id,
                    self.account.device_id,
                    ts,
                    content,
                    signature,
                ),
            )
            (ord_,) = db.execute(
                "SELECT COALESCE(MAX(ord), ?) + 1 FROM messages WHERE conv_id = ? AND ord > ?",
                (UNSENT_ORD, channel_id, UNSENT_ORD),
            ).fetchone()
            db.execute(
                "INSERT INTO messages (id, conv_id, seq, ord, sender_id, sender_device, is_own,"
                " kind, body, status, created_at) VALUES (?, ?, NULL, ?, ?, ?, 1, 'text', ?,"
                " 'sending', ?)",
                (
                    post_id.hex,
                    channel_id,
                    ord_,
                    self.account.account_id,
                    self.account.device_id,
                    text,
                    ts,
                ),
            )
            db.execute("UPDATE conversations SET last_activity = ? WHERE id = ?", (ts, channel_id))
        self._channel_messages([post_id], added=True)
        try:
            await self._channel_flush()
        except Forbidden:
            raise
        except ClientError:
            pass  # kept as sending: resent later
        found = self._store.messages([post_id])
        return found[0]

    async def retry_post(self, post_id: uuid.UUID) -> Message:
        """Post a failed own post again: the same signed bytes under the same id (a post the
        server has is answered with its seq). ``Forbidden`` if it is refused again (the post
        stays failed); resent later on a transient error, like a new post."""
        self._check_open()
        with self._store.transaction():
            if not cs.resend(self._store.db, post_id):
                raise ClientError("not_failed", "only a failed own post can be posted again")
        self._channel_messages([post_id], added=False)
        try:
            await self._channel_flush()
        except Forbidden:
            raise
        except ClientError:
            pass  # kept as sending: resent later
        return self._store.messages([post_id])[0]

    async def channel_history(self, conv_id: str, before: int | None, limit: int) -> Page:
        """A page of a channel's posts; fetches older ones from the server past the floor."""
        db = self._store.db
        _, floor, _ = cs.positions(db, conv_id)
        bound = before if before is not None else 1 << 62
        (have,) = db.execute(
            "SELECT count(*) FROM messages WHERE conv_id = ? AND ord < ? AND ord >= ?",
            (conv_id, bound, floor),
        ).fetchone()
        if have <= limit and floor > 1 and not self._closed:
            try:
                page = await self._get(
                    routes.CHANNEL_POSTS,
                    wire.PostPage,
                    {"before": floor, "limit": PAGE},
                    channel=conv_id,
                )
            except ClientError:
                page = None  # offline: what is stored
            if page is not None:
                await self._channel_store(conv_id, page.posts)
                low = min((p.seq for p in page.posts), default=1)
                while low > 1 and cs.has_seq(db, conv_id, low - 1):
                    low -= 1
                with self._store.transaction():
                    cs.set_positions(db, conv_id, floor=1 if not page.posts else low)
        return self._store.history(conv_id, before, limit)

    def channel_mark_read(self, conv_id: str) -> None:
        (top,) = self._store.db.execute(
            "SELECT coalesce(max(seq), 0) FROM messages WHERE conv_id = ?", (conv_id,)
        ).fetchone()
        self._store.db.execute(
            "UPDATE conversations SET read_upto = max(read_upto, ?) WHERE id = ?", (top, conv_id)
        )
        self._channel_changed(conv_id)

    def _channel_saved(self, info: wire.ChannelInfo) -> Channel:
        with self._store.transaction():
            cs.save_info(self._store.db, info, self.account.account_id, now_ms())
        self._channel_changed(info.id)
        return _channel(info)
