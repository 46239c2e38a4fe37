"""WebSocket frames of protocol version 1, encoded as MessagePack.

Every frame is a msgspec ``Struct`` tagged by the field ``t``. Client and server decode with
the unions :data:`ClientFrame` and :data:`ServerFrame`; nothing else goes over ``/v1/ws``.

Conversation flow, as the server sees one device (docs/architecture.md has the invariants):

1. The device connects with ``Authorization: Bearer <token>`` and sends :class:`Hello` with its
   per-conversation cursors (highest contiguous ``seq`` it has stored).
2. The server answers :class:`Welcome` (heads of every conversation of the account and the
   receipt watermarks the device needs), replays the device's pending queue as :class:`Batch`
   frames, then sends :class:`Synced`. Live envelopes follow as :class:`Envelope` frames.
3. :class:`Send` is answered by :class:`Accepted` (status ``sent``) or :class:`Rejected`
   (status ``failed``, permanent). Resending the same ``id`` returns the original ``seq``.
4. The device persists envelopes, then sends :class:`Ack` watermarks; the server drops acked
   entries from the device's pending queue and relays :class:`Receipt` to the senders.
5. A device that sees a gap sends :class:`Fetch`; the answer is a :class:`Batch`.
6. :class:`Ping` every 25 s; a connection silent for 60 s is closed by the server.

Times are integer milliseconds since the Unix epoch (UTC). Account ids and conversation ids are
opaque server-made strings; message ids are client-made UUIDs (the server takes any UUID;
Tidings clients make time-ordered ones, version 7 of RFC 9562, which keep each side's id
indexes appending instead of touching a random page per message).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from tidings.protocol.channels import Post

#: Version spoken by this code. A server refuses a Hello with another major version.
PROTOCOL_VERSION = 1
#: Largest WebSocket frame either side accepts (bytes). Bigger frames get ``frame_too_large``.
MAX_FRAME_BYTES = 256 * 1024
#: Largest opaque payload of one envelope (bytes); the rest of the frame is headroom.
MAX_PAYLOAD_BYTES = 240 * 1024
#: Most envelopes the server puts in one Batch and a client may ask for in one Fetch.
MAX_BATCH = 500

ConvId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Largest integer any store holds (SQLite and PostgreSQL BIGINT are signed 64-bit): every
#: seq, time and counter on the wire is bounded by it, so no value can overflow a column.
MAX_INT64 = 2**63 - 1
#: Most conversations a Hello or an Ack may name, and most entries of any other list or map in
#: a client frame: far above what one device has, far below what would hurt the server.
MAX_ITEMS = 10_000

Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
#: one device of one account, written "<account id>:<device id>"
DeviceAddress = Annotated[str, msgspec.Meta(pattern=r"^[^:]{1,64}:[1-9][0-9]{0,9}$")]
DeviceId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
#: a small counter or version number
SmallInt = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]

EnvelopeKind = Literal["msg", "system"]


class _Frame(msgspec.Struct, tag_field="t", forbid_unknown_fields=False, omit_defaults=True):
    """Base of every frame. Unknown fields are ignored so a minor version can add fields."""


# --------------------------------------------------------------------------- client → server


class Hello(_Frame, tag="hello"):
    """First frame after connecting."""

    version: SmallInt = PROTOCOL_VERSION
    #: conversation id → highest contiguous seq this device has stored
    cursors: Annotated[dict[ConvId, Seq], msgspec.Meta(max_length=MAX_ITEMS)] = {}


class Send(_Frame, tag="send"):
    """Post one message to a conversation. ``id`` is the idempotency key."""

    id: uuid.UUID
    conv: ConvId
    #: opaque to the server: content in clear until E2EE, then ciphertext
    payload: bytes
    #: account ids the sender wants notified loudly (mentions); visible to the server
    mentions: Annotated[list[AccountId], msgspec.Meta(max_length=MAX_ITEMS)] = []
    #: the sender asks that this wake nobody loudly (a reaction): pushes about it are silent;
    #: visible to the server
    quiet: bool = False
    #: End-to-end encryption (docs/e2ee.md): ciphertext per recipient device. In a direct
    #: conversation it must name exactly every device of both members except the sending one;
    #: in a group it is empty (the shared ``payload`` is the Sender Key message).
    device_payloads: Annotated[dict[DeviceAddress, bytes], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    #: Groups: SHA-256 of the sorted, newline-joined addresses of every device of every member
    #: except the sending one, as the sender knows them. A mismatch is answered StaleDevices.
    devices_digest: bytes = b""


class DeviceSend(_Frame, tag="dsend"):
    """Messages to single devices, outside any conversation (Sender Key distributions, session
    reset requests). Each value is already encrypted to its device. Answered DeviceAccepted."""

    id: uuid.UUID
    messages: Annotated[dict[DeviceAddress, bytes], msgspec.Meta(max_length=MAX_ITEMS)]


class Ack(_Frame, tag="ack"):
    """This device has durably stored every envelope up to and including ``upto[conv]``."""

    upto: Annotated[dict[ConvId, Seq], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    #: highest ``dseq`` of DeviceEnvelopes this device has stored
    device_upto: Seq = 0


class Read(_Frame, tag="read"):
    """The user has read everything up to and including ``seq`` in ``conv``."""

    conv: ConvId
    seq: Seq


class Fetch(_Frame, tag="fetch"):
    """Ask for envelopes with ``after < seq``, oldest first, at most ``limit``."""

    conv: ConvId
    after: Seq
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)] = 100


class Ping(_Frame, tag="ping"):
    n: SmallInt = 0


class Typing(_Frame, tag="typing"):
    """The user is typing in ``conv`` (``on``) or stopped. Ephemeral: never stored, relayed
    only to the devices of the other members (and the sender's own other devices) that are
    connected right now, as :class:`TypingNotice`. Clients send it throttled (at the start,
    then every 3 s while typing, off after 5 s idle or on send); the server limits it per
    device and drops it when sender or recipient turned typing indicators off."""

    conv: ConvId
    on: bool = True


ClientFrame = Hello | Send | DeviceSend | Ack | Read | Fetch | Ping | Typing


# --------------------------------------------------------------------------- server → client


class Watermark(msgspec.Struct, frozen=True):
    """How far one member of a conversation has received and read."""

    conv: ConvId
    account: AccountId
    delivered: Seq
    read: Seq
    #: when ``delivered`` (``read``) last moved (ms; None: unknown, or hidden from this
    #: reader): the time the watermark passed a message, not a time per message
    delivered_at: Millis | None = None
    read_at: Millis | None = None


class Welcome(_Frame, tag="welcome"):
    version: SmallInt
    account_id: AccountId
    device_id: DeviceId
    server_ts: Millis
    #: conversation id → last assigned seq, for every conversation the account belongs to
    heads: dict[ConvId, Seq] = {}
    #: other members' watermarks in conversations where this account has messages that are
    #: not yet read by everyone (so a sender that was offline catches up on its statuses)
    watermarks: list[Watermark] = []


class Accepted(_Frame, tag="accepted"):
    """The server stored the message: status ``sent``."""

    id: uuid.UUID
    conv: ConvId
    seq: Seq
    ts: Millis


class Rejected(_Frame, tag="rejected"):
    """Permanent refusal of a Send: status ``failed``. Transient trouble is an Error instead."""

    id: uuid.UUID
    conv: ConvId
    code: str
    message: str = ""


class Envelope(_Frame, tag="msg"):
    """One stored message of a conversation, as every member's device receives it."""

    conv: ConvId
    seq: Seq
    id: uuid.UUID
    sender: AccountId
    sender_device: SmallInt
    ts: Millis
    payload: bytes
    kind: EnvelopeKind = "msg"
    mentions: list[AccountId] = []
    #: this device's own ciphertext from ``Send.device_payloads`` (empty once acked/purged)
    device_payload: bytes = b""


class StaleDevices(_Frame, tag="stale"):
    """A Send's device list does not match the members' current devices. Nothing was stored;
    the client fixes its sessions and resends under the same ``id``."""

    id: uuid.UUID
    conv: ConvId
    #: current devices the Send did not cover (direct conversations)
    missing: list[DeviceAddress] = []
    #: devices the Send covered that no longer exist (direct conversations)
    extra: list[DeviceAddress] = []
    #: every member's current device ids (always present)
    devices: dict[AccountId, list[int]] = {}


class DeviceAccepted(_Frame, tag="daccepted"):
    """The DeviceSend is queued for every named device the sender may reach (a device with
    keys of its own account or of an account sharing a conversation with it, docs/e2ee.md);
    ``unknown`` lists the rest."""

    id: uuid.UUID
    unknown: list[DeviceAddress] = []


class DeviceEnvelope(_Frame, tag="dmsg"):
    """A message to this device alone, kept until acked with ``Ack.device_upto``. Replayed
    before any conversation Batch after Welcome."""

    dseq: Seq
    id: uuid.UUID
    sender: AccountId
    sender_device: SmallInt
    ts: Millis
    payload: bytes


class Batch(_Frame, tag="batch"):
    """Several envelopes of one conversation in seq order (replay or Fetch answer)."""

    conv: ConvId
    envelopes: list[Envelope]
    #: the conversation's last seq when the batch was made
    head: Seq = 0


class Receipt(_Frame, tag="receipt"):
    """A member's watermarks moved. Sent to the senders of the covered messages and to the
    member's own other devices."""

    conv: ConvId
    account: AccountId
    delivered: Seq
    read: Seq
    #: when the watermarks last moved (ms), as in :class:`Watermark`
    delivered_at: Millis | None = None
    read_at: Millis | None = None


class TypingNotice(_Frame, tag="typing"):
    """``account`` started (``on``) or stopped typing in ``conv`` (from a :class:`Typing`
    of one of its devices). Never stored or replayed; clients let it expire after 6 s."""

    conv: ConvId
    account: AccountId
    on: bool = True


class ChannelPosted(_Frame, tag="cpost"):
    """A new post of a channel this account subscribes to (tidings.protocol.channels), pushed
    to live devices only: the channel's log is the record, read from the device's own cursor
    (``GET /v1/channels/{id}/posts``). A device that sees a gap fetches it from there."""

    post: Post


class Synced(_Frame, tag="synced"):
    """The replay of the pending queue that followed Welcome is complete."""


class Error(_Frame, tag="error"):
    """A typed error. The connection stays open unless the code says otherwise."""

    code: str
    message: str = ""
    #: what the error refers to, e.g. the frame tag or message id
    ref: str | None = None


class Pong(_Frame, tag="pong"):
    n: SmallInt = 0


ServerFrame = (
    Welcome
    | Accepted
    | Rejected
    | StaleDevices
    | Envelope
    | Batch
    | DeviceAccepted
    | DeviceEnvelope
    | Receipt
    | Synced
    | Error
    | Pong
    | TypingNotice
    | ChannelPosted
)


# --------------------------------------------------------------------------- system envelopes

SystemAction = Literal["created", "member_added", "member_removed", "member_left", "title_changed"]


class SystemEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """Payload of an Envelope with ``kind == "system"``, written by the server (in clear: it is
    metadata the server already knows). Every conversation starts with ``created`` at seq 1."""

    action: SystemAction
    actor: AccountId
    #: accounts the action applies to (the new members, the removed member, …)
    members: list[AccountId] = []
    title: str | None = None


# --------------------------------------------------------------------------- codecs

_encoder = msgspec.msgpack.Encoder()
_client_decoder: msgspec.msgpack.Decoder[ClientFrame] = msgspec.msgpack.Decoder(ClientFrame)
_server_decoder: msgspec.msgpack.Decoder[ServerFrame] = msgspec.msgpack.Decoder(ServerFrame)
_system_decoder = msgspec.msgpack.Decoder(SystemEvent)


def encode(frame: msgspec.Struct) -> bytes:
    """Encode any frame or struct of this module to MessagePack."""
    return _encoder.encode(frame)


class NestedTooDeeply(msgspec.DecodeError):
    """Arrays or maps nested deeper than the decoder's stack allows (a thousand levels or so;
    no frame of the protocol nests more than four). msgspec answers such input with
    :class:`RecursionError`; every decoder of the protocol turns that into this
    ``msgspec.DecodeError``, so a caller handles it like any other undecodable input."""

    def __init__(self) -> None:
        super().__init__("MessagePack data is malformed: nested too deeply")


def decode_client_frame(data: bytes) -> ClientFrame:
    """Decode a frame sent by a client. Raises ``msgspec.DecodeError`` (also for input nested
    too deeply: :class:`NestedTooDeeply`) or ``msgspec.ValidationError`` on bad input."""
    try:
        return _client_decoder.decode(data)
    except RecursionError:
        raise NestedTooDeeply() from None


def decode_server_frame(data: bytes) -> ServerFrame:
    """Decode a frame sent by the server. Raises like :func:`decode_client_frame`."""
    try:
        return _server_decoder.decode(data)
    except RecursionError:
        raise NestedTooDeeply() from None


def decode_system_event(payload: bytes) -> SystemEvent:
    try:
        return _system_decoder.decode(payload)
    except RecursionError:
        raise NestedTooDeeply() from None
