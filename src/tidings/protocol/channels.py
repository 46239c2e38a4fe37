"""Broadcast channels: a few admins post, many subscribers read (docs/e2ee.md "Channels").

Channel posts are **not** end-to-end encrypted: the server stores each post once, in clear,
and every subscriber reads it from the channel's log. What protects a post is its signature:
the posting admin's device signs :func:`signed_bytes` (channel id, post id, the author's
timestamp and the content) with the account's identity key (XEdDSA), and every client checks
it against the channel's admin list before it shows the post as genuine. The seq is assigned by
the server after signing; it is not signed (see docs/e2ee.md for what that allows).

REST bodies are JSON (``bytes`` as base64); a post reaches live subscribers as the WebSocket
frame :class:`tidings.protocol.frames.ChannelPosted`.
"""

from __future__ import annotations

import struct
import uuid
from typing import Annotated, Literal

import msgspec

#: Longest post content (bytes): posts are text, not media.
MAX_POST_BYTES = 16 * 1024
#: XEdDSA signature length.
SIGNATURE_BYTES = 64
#: Most posts one page of ``channel_posts`` answers.
MAX_POST_PAGE = 200
#: Most subscribers one page of ``channel_subscribers`` answers.
MAX_SUBSCRIBER_PAGE = 1000
#: Domain separation of the signed bytes.
SIGNING_CONTEXT = b"tidings-channel-post-v1\x00"

ChannelId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: a public handle: 3 to 32 characters of [a-z0-9_]
HANDLE_PATTERN = r"^[a-z0-9_]{3,32}$"
Handle = Annotated[str, msgspec.Meta(pattern=HANDLE_PATTERN)]
InviteToken = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
Role = Literal["owner", "admin", "subscriber"]
ChannelNotify = Literal["all", "none"]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


def signed_bytes(channel: str, post_id: uuid.UUID, ts: int, content: bytes) -> bytes:
    """The canonical bytes an admin signs: context, then each field length-prefixed
    (channel id as UTF-8, the post id's 16 bytes, the timestamp as 8 bytes big-endian, the
    content). Unambiguous: no two different posts give the same bytes."""
    cid = channel.encode()
    return b"".join(
        (
            SIGNING_CONTEXT,
            struct.pack(">I", len(cid)),
            cid,
            post_id.bytes,
            struct.pack(">Q", ts),
            struct.pack(">I", len(content)),
            content,
        )
    )


class PostContent(msgspec.Struct, omit_defaults=True):
    """What ``Post.content`` holds (MessagePack): the text of the post."""

    text: str


class Post(msgspec.Struct, frozen=True):
    """One post of a channel's log, as stored once and read by everyone."""

    channel: ChannelId
    #: gapless per channel, assigned by the server (not signed)
    seq: _Seq
    id: uuid.UUID
    author: str
    author_device: int
    #: the author's time (ms), signed
    ts: _Millis
    #: when the server stored it (ms)
    server_ts: _Millis
    #: MessagePack of :class:`PostContent`, signed
    content: bytes
    signature: bytes


class AdminInfo(msgspec.Struct):
    account_id: str
    username: str
    role: Role


class ChannelInfo(msgspec.Struct):
    id: ChannelId
    title: str
    handle: str | None
    public: bool
    description: str
    owner: str
    #: every admin, the owner first: whose identity keys may sign posts
    admins: list[AdminInfo]
    subscribers: int
    #: the last assigned seq
    head: _Seq
    created_at: _Millis
    #: the caller's role here (None: not subscribed)
    role: Role | None = None
    #: the caller's notification level (channels default to none: no wake-ups)
    notify: ChannelNotify = "none"


class CreateChannel(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    #: a public channel can be found by its handle and joined by anyone
    public: bool = False
    handle: Handle | None = None
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class NewPost(msgspec.Struct, forbid_unknown_fields=True):
    """An admin's post; ``id`` is the idempotency key (a resend gets the original seq)."""

    id: uuid.UUID
    ts: _Millis
    content: Annotated[bytes, msgspec.Meta(max_length=MAX_POST_BYTES)]
    signature: Annotated[
        bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)
    ]


class PostAccepted(msgspec.Struct):
    """The post is in the channel's log (durable) and queued for fan-out."""

    id: uuid.UUID
    channel: ChannelId
    seq: _Seq
    server_ts: _Millis


class PostPage(msgspec.Struct):
    """Posts in ascending seq order; ``head`` is the channel's last seq."""

    channel: ChannelId
    posts: list[Post]
    head: _Seq


class JoinChannel(msgspec.Struct, forbid_unknown_fields=True):
    """Subscribe: a public channel needs nothing, a private one a live invite token."""

    invite: InviteToken | None = None


class ChannelInvite(msgspec.Struct):
    channel: ChannelId
    token: str
    created_at: _Millis


class SetChannelNotify(msgspec.Struct, forbid_unknown_fields=True):
    level: ChannelNotify


class Subscriber(msgspec.Struct):
    account_id: str
    username: str
    role: Role
    joined_at: _Millis


class SubscriberPage(msgspec.Struct):
    subscribers: list[Subscriber]
    #: pass as ``start`` for the next page (None: that was the last)
    next: str | None = None


_post_content_decoder = msgspec.msgpack.Decoder(PostContent)
_encoder = msgspec.msgpack.Encoder()


def encode_content(text: str) -> bytes:
    return _encoder.encode(PostContent(text=text))


def decode_content(content: bytes) -> PostContent:
    """Raises ``msgspec.DecodeError``/``ValidationError`` on bad content."""
    try:
        return _post_content_decoder.decode(content)
    except RecursionError:
        raise msgspec.DecodeError("nested too deeply") from None
