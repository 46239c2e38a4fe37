"""Value types of the public client API: frozen dataclasses and small enums.

Everything the CLI and the app see is one of these; none of them hold a reference back into the
client, so they can be passed around and compared freely.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .core.types import EngineSettings as EngineSettings
from .core.types import MessageStatus as MessageStatus


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    #: ended for good: the device was removed or its token is invalid, another connection
    #: took over, or the app must be updated (``Connection.last_error`` says which); the
    #: client does not reconnect
    CLOSED = "closed"


#: What a message is: a text, or a line the client shows in the history: a conversation
#: event ("alice added bob"), a message that could not be decrypted, a contact's changed
#: safety number.
MessageKind = Literal["text", "system", "undecryptable", "identity_changed"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("text", "system", "undecryptable", "identity_changed")


@dataclass(frozen=True)
class Account:
    account_id: str
    username: str
    device_id: int
    server_url: str


@dataclass(frozen=True)
class Member:
    account_id: str
    username: str
    role: str  # "admin" | "member"
    #: the display name: the profile's name, or the username without one
    name: str = ""


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    conv_id: str
    #: None while the server has not accepted the message yet
    seq: int | None
    sender_id: str
    sender_name: str
    is_own: bool
    kind: MessageKind
    #: the text, or a human sentence for the other kinds ("alice added bob")
    body: str
    reply_to: uuid.UUID | None
    #: "sender: body snippet" of the quoted message, if it is known locally
    reply_preview: str | None
    #: (emoji, usernames) pairs, in order of first use
    reactions: tuple[tuple[str, tuple[str, ...]], ...]
    #: meaningful for own messages; others' messages are DELIVERED, or READ once I read them
    status: MessageStatus
    fail_reason: str | None
    #: ms since the epoch: the local clock for own messages, the server's for others
    created_at: int
    #: someone else's message that mentions me (``@me``, or a reply to my message)
    mentions_me: bool = False
    #: the sender changed the text (``Client.edit``); the earlier texts: ``Client.edit_history``
    edited: bool = False
    #: when it was last edited (ms), if it was
    edited_at: int | None = None
    #: deleted for everyone: ``body`` is "This message was deleted", nothing else is kept
    deleted: bool = False
    #: photos, video, a voice note or files the message carries (``body`` is their caption)
    attachments: tuple[Attachment, ...] = ()
    #: False for a channel post whose signature did not check out ("could not verify")
    verified: bool = True


@dataclass(frozen=True)
class Conversation:
    id: str
    #: "direct" | "group"
    kind: str
    #: the group title, or the peer's display name (profile name, else username) for a
    #: direct chat
    title: str
    members: tuple[Member, ...]
    last_message: Message | None
    #: ms since the epoch, for ordering the chat list (newest first)
    last_activity: int
    #: messages from others above my read watermark
    unread: int
    is_admin: bool
    #: the conversation with only this account's own devices (``Client.note_to_self``)
    note_to_self: bool = False
    #: a channel's subscriber count (kind "channel")
    subscribers: int = 0


@dataclass(frozen=True)
class Page:
    #: ascending seq order (messages still sending come last)
    messages: tuple[Message, ...]
    #: cursor for the next older page; None when this page reaches the start
    before: int | None


@dataclass(frozen=True)
class SearchHit:
    message: Message
    #: the body around the matches, which are marked with [ and ]
    snippet: str


@dataclass(frozen=True)
class Connection:
    state: ConnectionState
    #: seconds until the next connection attempt while offline
    retry_in: float | None
    #: why the last connection failed; when CLOSED, the reason for the user
    last_error: str | None
    #: when CLOSED: the WebSocket close code that ended it (HTTP 401 counts as 4401)
    close_code: int | None = None


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class MessageAdded:
    """A message appeared: incoming, or own (also own from another device)."""

    message: Message


@dataclass(frozen=True)
class MessageUpdated:
    """Status, reactions or seq of a message changed."""

    message: Message


@dataclass(frozen=True)
class ConversationUpdated:
    """A new conversation, or its membership, title, preview or unread count changed."""

    conversation: Conversation


@dataclass(frozen=True)
class ConnectionChanged:
    connection: Connection


@dataclass(frozen=True)
class Synced:
    """The replay after a (re)connect is complete: the local store is up to date."""


@dataclass(frozen=True)
class IdentityChanged:
    """A contact's identity key (safety number) changed. If the user had verified it,
    sending to that contact fails with ``identity_changed`` until :meth:`Client.verify`."""

    account_id: str
    username: str
    #: the direct conversation where a system line notes the change, if there is one
    conv_id: str | None
    was_verified: bool


@dataclass(frozen=True)
class Undecryptable:
    """A message could not be decrypted: a placeholder line is in the history and the
    sender's device was asked to start a new session."""

    sender: str
    conv_id: str
    message_id: uuid.UUID


@dataclass(frozen=True)
class Notify:
    """A received message that should alert on this device (tidings.client.push): not my
    own, not read on another device, the chat not muted, at level ``all``, or ``mentions``
    and it mentions me (every message of a direct chat)."""

    message: Message
    #: the group title or the peer's display name
    title: str
    mentioned: bool


#: Where an attachment is: received and not downloaded yet (``remote``), in the local cache
#: (``ready``: ``Attachment.path``), or, for an own message, on its way up.
AttachmentState = Literal["remote", "ready", "preparing", "uploading", "uploaded", "failed"]


@dataclass(frozen=True)
class Attachment:
    """One attachment of a message (``Message.attachments``); from the end-to-end-encrypted
    pointer, so nothing here came from the server in clear."""

    #: local id (``Client.download`` takes the message id; this picks one of several)
    id: str
    #: "image" | "video" | "voice" | "file"
    kind: str
    content_type: str
    #: plaintext bytes
    size: int
    file_name: str | None
    width: int | None
    height: int | None
    duration_ms: int | None
    #: BlurHash placeholder of an image or a video's first frame
    blurhash: str | None
    #: a voice note's 64 peak levels, 0..255 (255 = its loudest moment)
    waveform: tuple[int, ...] | None
    state: AttachmentState
    #: the plaintext file in the profile's media cache once downloaded (own: at once)
    path: Path | None = None


@dataclass(frozen=True)
class TransferProgress:
    """An attachment upload or download moved: ``done`` of ``total`` bytes (ciphertext)."""

    message_id: uuid.UUID
    attachment_id: str
    direction: Literal["up", "down"]
    done: int
    total: int


@dataclass(frozen=True)
class Profile:
    """What an account shows of itself (``Client.profile``): end-to-end encrypted on the
    server, opened with the profile key it shared with us. Without that key only the
    username is known (``name`` is then the username and ``has_key`` False)."""

    account_id: str
    username: str
    #: the display name: the profile's name, or the username without one
    name: str
    about: str
    #: JPEG bytes (≤ 256 px, ≤ 64 KiB), if it has an avatar
    avatar: bytes | None
    version: int
    has_key: bool


@dataclass(frozen=True)
class TypingChanged:
    """Someone started or stopped typing in a conversation (never stored; shown while it
    lasts: a ``typing=True`` without a follow-up expires after ``TYPING_EXPIRES`` seconds)."""

    conv_id: str
    account_id: str
    #: the display name of who is typing
    name: str
    typing: bool


@dataclass(frozen=True)
class UnreadMarker:
    """Where the unread separator of a chat goes: the first message from others above my
    read watermark (None: nothing unread) and how many there are."""

    conv_id: str
    first_unread: uuid.UUID | None
    count: int


@dataclass(frozen=True)
class MemberReceipt:
    """How far one member got with an own message: whether it reached one of their devices,
    and whether they read it (from their watermarks)."""

    account_id: str
    name: str
    delivered: bool
    read: bool
    #: when their watermark passed this message, approximately: the time their delivered
    #: (read) watermark last moved, if it covers the message (ms; None: unknown)
    delivered_at: int | None = None
    read_at: int | None = None


@dataclass(frozen=True)
class MessageRemoved:
    """A message was deleted on this device only (``Client.delete_for_me``): drop its row."""

    conv_id: str
    message_id: uuid.UUID


@dataclass(frozen=True)
class MessageDetails:
    message: Message
    #: every other member of the conversation (own messages only; empty for others')
    receipts: tuple[MemberReceipt, ...]
    #: earlier texts of an edited message, oldest first: (text, written at ms)
    edits: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class DeviceInfo:
    """One device of this account (``Client.devices``)."""

    device_id: int
    name: str
    #: ms since the epoch
    created_at: int
    #: ms since the epoch of its last connection or request (None: never seen)
    last_seen: int | None
    #: the device this client runs on
    current: bool


ClientEvent = (
    Notify
    | MessageAdded
    | MessageUpdated
    | ConversationUpdated
    | ConnectionChanged
    | Synced
    | IdentityChanged
    | Undecryptable
    | TransferProgress
    | TypingChanged
    | MessageRemoved
)
