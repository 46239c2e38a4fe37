"""Reading and sending channel posts for :class:`~tidings.client.Client` (the mixin under
:class:`~tidings.client.channels.ChannelFeatures`): the catch-up on every sync, live
``ChannelPosted`` frames, verifying each post's signature against the channel's admins, and the
outbox of own posts (client/channels.py says how)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, TypeVar

import httpx
import msgspec

from tidings.crypto import IdentityKey, InvalidKeyError
from tidings.protocol import channels as wire
from tidings.protocol import keys, routes
from tidings.protocol.frames import ChannelPosted

from . import channel_store as cs
from .errors import ClientError, ServerRefused
from .network import diagnose
from .rest import _decode
from .types import ClientEvent, ConversationUpdated, MessageAdded, MessageUpdated

if TYPE_CHECKING:
    from .rest import Rest
    from .runtime import Runtime
    from .store import LocalStore
    from .types import Account

log = logging.getLogger("tidings.client")
_A = TypeVar("_A")

#: posts per catch-up page
PAGE = wire.MAX_POST_PAGE
#: a device further behind than this reads the newest page first, older ones on scroll
SKIP_AHEAD = 500
#: an admin's identity key is fetched again at most this often when a signature fails (ms)
KEY_RECHECK_MS = 60_000
#: backoff of resending own posts (seconds)
RESEND_BASE, RESEND_CAP = 1.0, 60.0
UNVERIFIED = "could not verify"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _body(content: bytes) -> str | None:
    try:
        return wire.decode_content(content).text
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class ChannelSync:
    """Mixed into :class:`~tidings.client.Client` through ``ChannelFeatures``."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _runtime: Runtime
        _rest: Rest
        _closed: bool
        _channel_lock: asyncio.Lock
        _channel_resend: asyncio.TimerHandle | None
        _channel_backoff: float

        def _check_open(self) -> None: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _in_background(self, work: Coroutine[None, None, None]) -> None: ...
        def _channel_saved(self, info: wire.ChannelInfo) -> object: ...
        async def channel_info(self, channel_id: str) -> object: ...

    # ------------------------------------------------------------------ sync and receiving

    async def _channels_sync(self) -> None:
        """After every (re)connect: the channel list, each channel from its cursor, the
        outbox."""
        self._check_open()
        infos = await self._rest.call(routes.MY_CHANNELS, list[wire.ChannelInfo])
        mine = {info.id for info in infos}
        for info in infos:
            self._channel_saved(info)
        for channel_id in cs.subscribed(self._store.db):
            if channel_id not in mine:  # unsubscribed on another device
                self._store.db.execute(
                    "UPDATE channels SET role = NULL WHERE id = ?", (channel_id,)
                )
                self._store.db.execute(
                    "UPDATE conversations SET is_member = 0 WHERE id = ?", (channel_id,)
                )
                self._channel_changed(channel_id)
        for channel_id in sorted(mine):
            await self._channel_catch_up(channel_id)
        await self._channel_flush()

    async def _channel_catch_up(self, channel_id: str) -> None:
        db = self._store.db
        cursor, _, head = cs.positions(db, channel_id)
        if cursor == 0 or head - cursor > SKIP_AHEAD:  # the newest page; older ones on scroll
            page = await self._get(
                routes.CHANNEL_POSTS, wire.PostPage, {"limit": PAGE}, channel=channel_id
            )
            await self._channel_store(channel_id, page.posts)
            low = page.posts[0].seq if page.posts else page.head + 1
            with self._store.transaction():
                db.execute(
                    "UPDATE channels SET cursor = ?, floor = ? WHERE id = ?",
                    (page.head, max(1, low), channel_id),
                )
                cs.advance(db, channel_id)
            return
        await self._channel_fill(channel_id, head)

    async def _channel_fill(self, channel_id: str, until: int) -> None:
        """Read the log from the cursor until ``until`` (a gap, or the head)."""
        while True:
            cursor, _, _ = cs.positions(self._store.db, channel_id)
            if cursor >= until:
                return
            page = await self._get(
                routes.CHANNEL_POSTS,
                wire.PostPage,
                {"after": cursor, "limit": PAGE},
                channel=channel_id,
            )
            if not page.posts:
                return
            await self._channel_store(channel_id, page.posts)
            with self._store.transaction():
                cs.advance(self._store.db, channel_id)
            until = max(until, page.head)

    def _channel_frame(self, frame: ChannelPosted) -> None:
        if not self._closed:
            self._in_background(self._channel_live(frame.post))

    async def _channel_live(self, post: wire.Post) -> None:
        cursor, _, _ = cs.positions(self._store.db, post.channel)
        if post.seq > cursor + 1 and cursor > 0:
            await self._channel_fill(post.channel, post.seq)  # the gap, and this post
            return
        await self._channel_store(post.channel, [post])
        with self._store.transaction():
            cs.advance(self._store.db, post.channel)

    async def _channel_store(self, channel_id: str, posts: list[wire.Post]) -> None:
        """Verify and store posts (once each), then tell the subscribers of events."""
        async with self._channel_lock:
            checked = [(p, *(await self._channel_verify(channel_id, p))) for p in posts]
            added: list[uuid.UUID] = []
            updated: list[uuid.UUID] = []
            db = self._store.db
            with self._store.transaction():
                for post, body, verified in checked:
                    if cs.accept(db, post.id, post.seq, post.server_ts):
                        updated.append(post.id)
                    elif cs.store_post(
                        db, post, body, verified, post.author == self.account.account_id
                    ):
                        added.append(post.id)
            self._channel_messages(added, added=True)
            self._channel_messages(updated, added=False)

    async def _channel_verify(self, channel_id: str, post: wire.Post) -> tuple[str, bool]:
        """The text to show and whether the post is genuine."""
        body = _body(post.content)
        if body is None or post.channel != channel_id:
            return body or UNVERIFIED, False
        db = self._store.db
        if not cs.was_admin(db, channel_id, post.author, post.server_ts):
            try:  # perhaps a new admin: the list as the server has it now
                await self.channel_info(channel_id)
            except ClientError:
                return body, False
            if not cs.was_admin(db, channel_id, post.author, post.server_ts):
                return body, False
        signed = wire.signed_bytes(channel_id, post.id, post.ts, post.content)
        for fresh in (False, True):
            key = await self._admin_key(post.author, fresh)
            if key is not None and key.verify_signature(signed, post.signature):
                return body, True
        return body, False

    async def _admin_key(self, account_id: str, fresh: bool) -> IdentityKey | None:
        db = self._store.db
        if account_id == self.account.account_id:
            return None if fresh else self._store.keys.get_identity_key_pair().identity_key
        known = cs.known_key(db, account_id)
        now = now_ms()
        if known is None or (fresh and now - known[1] > KEY_RECHECK_MS):
            try:
                bundles = await self._rest.call(
                    routes.BUNDLES, keys.PreKeyBundles, account_id=account_id
                )
            except ClientError:
                bundles = None
            if bundles is not None:
                cs.save_key(db, account_id, bundles.identity_key, now)
                known = (bundles.identity_key, now)
        elif fresh:
            return None
        if known is None:
            return None
        try:
            return IdentityKey.deserialize(known[0])
        except InvalidKeyError:
            return None

    # ------------------------------------------------------------------ the outbox

    async def _channel_flush(self) -> None:
        """Send every own post without an answer, in order; ``ClientError`` of the first
        transient failure (a resend is scheduled), ``Forbidden`` of a refused one."""
        refused: ServerRefused | None = None
        for channel_id, body in cs.pending(self._store.db):
            try:
                accepted = await self._rest.call(
                    routes.POST_TO_CHANNEL, wire.PostAccepted, body, channel=channel_id
                )
            except ServerRefused as exc:
                with self._store.transaction():
                    cs.fail(self._store.db, body.id, exc.message or exc.code)
                self._channel_messages([body.id], added=False)
                refused = refused or exc
                continue
            except ClientError:
                self._channel_schedule_resend()
                raise
            self._channel_backoff = RESEND_BASE
            with self._store.transaction():
                if cs.accept(self._store.db, body.id, accepted.seq, accepted.server_ts):
                    cs.advance(self._store.db, channel_id)
            self._channel_messages([body.id], added=False)
        if refused is not None:
            raise refused

    def _channel_schedule_resend(self) -> None:
        if self._closed or self._channel_resend is not None:
            return
        delay, self._channel_backoff = (
            self._channel_backoff,
            min(RESEND_CAP, self._channel_backoff * 2),
        )

        def fire() -> None:
            self._channel_resend = None
            if not self._closed:
                self._in_background(self._channel_flush())

        self._channel_resend = asyncio.get_running_loop().call_later(delay, fire)

    # ------------------------------------------------------------------ helpers

    async def _get(
        self, route: routes.Route, answer: type[_A], query: dict[str, str | int], **params: str
    ) -> _A:
        """A GET with query parameters (Rest.call has none)."""
        self._check_open()
        try:
            response = await self._rest.http.get(route.url(**params), params=query)
        except httpx.HTTPError as exc:
            raise await diagnose(exc, str(self._rest.http.base_url)) from exc
        return _decode(response, answer)

    def _channel_changed(self, channel_id: str) -> None:
        found = self._store.conversation(channel_id)
        if found is not None:
            self._emit(ConversationUpdated(found))

    def _channel_messages(self, ids: list[uuid.UUID], added: bool) -> None:
        if not ids:
            return
        for message in self._store.messages(ids):
            self._emit(MessageAdded(message) if added else MessageUpdated(message))
        for channel_id in {m.conv_id for m in self._store.messages(ids)}:
            self._channel_changed(channel_id)
