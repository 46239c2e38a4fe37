"""What the channel service needs from a store: the :class:`ChannelStore` protocol and its
records. The SQLite store implements it in :mod:`tidings.server.store.sqlite.channels`."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Protocol

from tidings.protocol.channels import Post
from tidings.server.push.store import StoredRegistration


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelAdmin:
    account_id: str
    username: str
    role: str  # "owner" | "admin"


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelRecord:
    id: str
    title: str
    handle: str | None
    public: bool
    description: str
    owner: str
    last_seq: int
    subscribers: int
    created_at: int
    #: the owner first, then admins by account id
    admins: tuple[ChannelAdmin, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Membership:
    """One account's place in a channel."""

    role: str  # "owner" | "admin" | "subscriber"
    notify: str  # "all" | "none"


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriberRow:
    account_id: str
    username: str
    role: str
    joined_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class NewChannelPost:
    channel: str
    id: uuid.UUID
    author: str
    author_device: int
    ts: int
    server_ts: int
    content: bytes
    signature: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class AppendedPost:
    post: Post
    #: place in the global log (what fan-out queues follow)
    pos: int
    #: the id was already stored: ``post`` is the original
    duplicate: bool


class ChannelStore(Protocol):
    async def create_channel(
        self,
        channel_id: str,
        title: str,
        handle: str | None,
        public: bool,
        description: str,
        owner: str,
        now: int,
    ) -> ChannelRecord:
        """Raises ``Refused(CONFLICT)`` when the handle is taken."""

    async def channel(self, channel_id: str) -> ChannelRecord | None: ...

    async def channel_by_handle(self, handle: str) -> ChannelRecord | None: ...

    async def membership(self, channel_id: str, account_id: str) -> Membership | None: ...

    async def channels_of(self, account_id: str) -> list[tuple[ChannelRecord, Membership]]: ...

    async def subscribe(self, channel_id: str, account_id: str, now: int) -> None:
        """Idempotent."""

    async def unsubscribe(self, channel_id: str, account_id: str) -> None:
        """Raises ``Refused(FORBIDDEN)`` for the owner."""

    async def set_role(self, channel_id: str, account_id: str, role: str, now: int) -> None:
        """``admin`` (subscribing the account if needed) or back to ``subscriber``."""

    async def set_channel_notify(self, channel_id: str, account_id: str, level: str) -> None: ...

    async def subscribers(self, channel_id: str, after: str, limit: int) -> list[SubscriberRow]:
        """Members ordered by account id, after ``after``."""

    async def subscriber_ids(self, channel_id: str) -> list[str]: ...

    async def create_invite(self, token: str, channel_id: str, by: str, now: int) -> None: ...

    async def invite_channel(self, token: str) -> str | None:
        """The channel a live (not revoked) invite token joins, if any."""

    async def revoke_invite(self, channel_id: str, token: str, now: int) -> bool: ...

    async def append_post(self, post: NewChannelPost) -> AppendedPost:
        """Append to the log with the next seq, in one transaction with the check that the
        author is the owner or an admin (``Refused`` FORBIDDEN/NOT_FOUND otherwise); a stored
        id answers the original."""

    async def posts_after(self, channel_id: str, after: int, limit: int) -> list[Post]: ...

    async def posts_before(self, channel_id: str, before: int, limit: int) -> list[Post]:
        """The ``limit`` posts right below ``before``, ascending."""

    async def log_after(self, pos: int, limit: int) -> list[tuple[int, Post]]:
        """Posts of every channel after global position ``pos``, in log order."""

    async def log_end(self) -> int:
        """The global position of the newest post (0: none)."""

    async def fanout_position(self, name: str) -> int: ...

    async def set_fanout_position(self, name: str, position: int) -> None: ...

    async def channel_push_targets(self, channel_id: str) -> list[StoredRegistration]:
        """Push registrations of the devices of members whose level here is ``all``."""
