"""The rules of broadcast channels: who may see, join, post and manage (docs/e2ee.md
"Channels"). Posts are stored once, in the channel's log, then queued for fan-out
(:mod:`tidings.server.channels.fanout`); the server never checks their signatures (it has no
crypto): clients do.

* A **public** channel can be found by its handle, read and joined by anyone. A **private**
  one is visible to its members only (404 to everyone else), joined through an invite link an
  admin made and can revoke.
* The **owner** adds and removes admins; owner and admins post, make and revoke invites and
  see the subscriber list. Everyone who can see a channel sees its subscriber count and its
  admins (whose identity keys sign the posts).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable

from tidings.protocol import ErrorCode
from tidings.protocol.channels import (
    MAX_POST_PAGE,
    MAX_SUBSCRIBER_PAGE,
    AdminInfo,
    ChannelInfo,
    ChannelInvite,
    CreateChannel,
    NewPost,
    PostAccepted,
    PostPage,
    Subscriber,
    SubscriberPage,
)
from tidings.server.channels.fanout import FanoutQueue
from tidings.server.channels.push import ChannelPush
from tidings.server.channels.store import ChannelRecord, ChannelStore, Membership, NewChannelPost
from tidings.server.domain import Refused

ADMINS = ("owner", "admin")


def _now() -> int:
    return time.time_ns() // 1_000_000


def info(record: ChannelRecord, me: Membership | None) -> ChannelInfo:
    return ChannelInfo(
        id=record.id,
        title=record.title,
        handle=record.handle,
        public=record.public,
        description=record.description,
        owner=record.owner,
        admins=[AdminInfo(a.account_id, a.username, a.role) for a in record.admins],  # type: ignore[arg-type]
        subscribers=record.subscribers,
        head=record.last_seq,
        created_at=record.created_at,
        role=None if me is None else me.role,  # type: ignore[arg-type]
        notify="all" if me is not None and me.notify == "all" else "none",
    )


class ChannelService:
    def __init__(
        self,
        store: ChannelStore,
        queue: FanoutQueue,
        *,
        push: ChannelPush | None = None,
        clock: Callable[[], int] = _now,
    ) -> None:
        self.store = store
        self.queue = queue
        self.push = push
        self.clock = clock

    # ------------------------------------------------------------------ seeing

    async def _visible(self, account: str, channel: str) -> tuple[ChannelRecord, Membership | None]:
        record = await self.store.channel(channel)
        me = None if record is None else await self.store.membership(channel, account)
        if record is None or (not record.public and me is None):
            raise Refused(ErrorCode.NOT_FOUND, "no such channel")
        return record, me

    async def _admin(self, account: str, channel: str) -> ChannelRecord:
        record, me = await self._visible(account, channel)
        if me is None or me.role not in ADMINS:
            raise Refused(ErrorCode.FORBIDDEN, "only the channel's admins may do that")
        return record

    async def create(self, account: str, body: CreateChannel) -> ChannelInfo:
        if body.handle is not None and not body.public:
            raise Refused(ErrorCode.BAD_FRAME, "only a public channel has a handle")
        record = await self.store.create_channel(
            "h" + uuid.uuid4().hex, body.title, body.handle, body.public, body.description,
            account, self.clock(),
        )  # fmt: skip
        return info(record, Membership("owner", "none"))

    async def info(self, account: str, channel: str) -> ChannelInfo:
        return info(*await self._visible(account, channel))

    async def by_handle(self, account: str, handle: str) -> ChannelInfo:
        record = await self.store.channel_by_handle(handle.lower().lstrip("@"))
        if record is None or not record.public:
            raise Refused(ErrorCode.NOT_FOUND, "no public channel has that handle")
        return info(record, await self.store.membership(record.id, account))

    async def mine(self, account: str) -> list[ChannelInfo]:
        return [info(record, me) for record, me in await self.store.channels_of(account)]

    # ------------------------------------------------------------------ joining

    async def subscribe(self, account: str, channel: str, invite: str | None) -> ChannelInfo:
        record = await self.store.channel(channel)
        if record is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such channel")
        if (
            not record.public
            and await self.store.membership(channel, account) is None
            and (invite is None or await self.store.invite_channel(invite) != channel)
        ):
            raise Refused(ErrorCode.NOT_FOUND, "no such channel, or the invite was revoked")
        return await self._join(account, channel)

    async def join_by_invite(self, account: str, token: str) -> ChannelInfo:
        channel = await self.store.invite_channel(token)
        if channel is None:
            raise Refused(ErrorCode.NOT_FOUND, "this invite link was revoked or never existed")
        return await self._join(account, channel)

    async def _join(self, account: str, channel: str) -> ChannelInfo:
        await self.store.subscribe(channel, account, self.clock())
        self.queue.members_changed(channel)
        return await self.info(account, channel)

    async def unsubscribe(self, account: str, channel: str) -> None:
        await self.store.unsubscribe(channel, account)
        self.queue.members_changed(channel)

    async def create_invite(self, account: str, channel: str) -> ChannelInvite:
        await self._admin(account, channel)
        token, now = secrets.token_urlsafe(18), self.clock()
        await self.store.create_invite(token, channel, account, now)
        return ChannelInvite(channel=channel, token=token, created_at=now)

    async def revoke_invite(self, account: str, channel: str, token: str) -> None:
        await self._admin(account, channel)
        if not await self.store.revoke_invite(channel, token, self.clock()):
            raise Refused(ErrorCode.NOT_FOUND, "no such invite")

    async def set_admin(self, account: str, channel: str, target: str, admin: bool) -> ChannelInfo:
        _, me = await self._visible(account, channel)
        if me is None or me.role != "owner":
            raise Refused(ErrorCode.FORBIDDEN, "only the owner adds and removes admins")
        await self.store.set_role(channel, target, "admin" if admin else "subscriber", self.clock())
        self.queue.members_changed(channel)
        return await self.info(account, channel)

    async def subscribers(
        self, account: str, channel: str, after: str, limit: int
    ) -> SubscriberPage:
        await self._admin(account, channel)
        limit = max(1, min(limit, MAX_SUBSCRIBER_PAGE))
        rows = await self.store.subscribers(channel, after, limit)
        return SubscriberPage(
            subscribers=[Subscriber(r.account_id, r.username, r.role, r.joined_at) for r in rows],  # type: ignore[arg-type]
            next=rows[-1].account_id if len(rows) == limit else None,
        )

    async def set_notify(self, account: str, channel: str, level: str) -> ChannelInfo:
        _, me = await self._visible(account, channel)
        if me is None:
            raise Refused(ErrorCode.NOT_MEMBER, "not subscribed to this channel")
        await self.store.set_channel_notify(channel, account, level)
        return await self.info(account, channel)

    # ------------------------------------------------------------------ posts

    async def post(self, account: str, device: int, channel: str, body: NewPost) -> PostAccepted:
        """Append once (durable), queue for fan-out, then answer. A resend of a stored id gets
        the original seq and queues nothing."""
        await self._visible(account, channel)  # a private channel: 404 to outsiders
        appended = await self.store.append_post(
            NewChannelPost(
                channel=channel, id=body.id, author=account, author_device=device, ts=body.ts,
                server_ts=self.clock(), content=body.content, signature=body.signature,
            )
        )  # fmt: skip
        post = appended.post
        if not appended.duplicate:
            await self.queue.publish(appended.pos, post)
            if self.push is not None:
                self.push.posted(post)
        return PostAccepted(
            id=post.id, channel=post.channel, seq=post.seq, server_ts=post.server_ts
        )

    async def posts(
        self, account: str, channel: str, after: int | None, before: int | None, limit: int
    ) -> PostPage:
        """``after``: the posts above it, oldest first (catching up); ``before``: the ``limit``
        posts below it; neither: the newest ``limit`` (a reader who was away long may skip)."""
        record, _ = await self._visible(account, channel)
        limit = max(1, min(limit, MAX_POST_PAGE))
        if after is not None:
            posts = await self.store.posts_after(channel, after, limit)
        else:
            below = before if before is not None else record.last_seq + 1
            posts = await self.store.posts_before(channel, below, limit)
        return PostPage(
            channel=channel, posts=posts, head=max(record.last_seq, *(p.seq for p in posts), 0)
        )
