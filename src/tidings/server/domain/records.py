"""What the server's state is made of, as plain values: the records a store hands out and
takes in, and the two refusals every layer speaks (:class:`Refused`, :class:`StaleDeviceList`).

No I/O here: the records are built by a store and read by the delivery engine and the API.
The ones made for every message (:class:`NewMessage`, :class:`Appended`,
:class:`WatermarkMove`) are frozen msgspec Structs, built in C: some ten times faster
than a frozen dataclass, whose ``__init__`` sets each field through ``object.__setattr__``.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Literal

import msgspec

from tidings.protocol import DeviceEnvelope, Envelope, ErrorCode

Role = Literal["admin", "member"]
ConversationKind = Literal["direct", "group"]


class Refused(Exception):
    """A permanent refusal with a protocol error code; nothing was changed."""

    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class StaleDeviceList(Exception):
    """A Send's device list does not match the members' current devices (docs/e2ee.md);
    nothing was stored. ``devices`` maps every member to its devices that have keys."""

    def __init__(self, missing: list[str], extra: list[str], devices: dict[str, list[int]]) -> None:
        super().__init__("stale device list")
        self.missing = missing
        self.extra = extra
        self.devices = devices


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as authentication sees it."""

    account_id: str
    username: str
    device_id: int
    device_name: str
    #: SHA-256 of the token's secret part
    token_hash: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class AccountRecord:
    account_id: str
    username: str
    created_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class MemberRecord:
    account_id: str
    username: str
    role: Role
    #: seq of the system envelope that brought this member in (1 for founding members);
    #: the member sees the conversation from there on
    joined_seq: int
    delivered: int
    read: int


@dataclasses.dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    kind: ConversationKind
    title: str
    last_seq: int
    created_at: int
    members: tuple[MemberRecord, ...]

    def member(self, account_id: str) -> MemberRecord | None:
        for member in self.members:
            if member.account_id == account_id:
                return member
        return None


class NewMessage(msgspec.Struct, frozen=True):
    """A client's Send, with the identity of the device that sent it."""

    id: uuid.UUID
    conv: str
    sender: str
    sender_device: int
    payload: bytes
    mentions: tuple[str, ...]
    ts: int
    #: ((account, device), ciphertext) per recipient device (direct conversations, E2EE)
    device_payloads: tuple[tuple[tuple[str, int], bytes], ...] = ()
    #: SHA-256 of the sender's view of the group's devices (groups, E2EE); b"" when absent
    devices_digest: bytes = b""

    def envelope(self, seq: int) -> Envelope:
        """The Envelope this message is stored and delivered as, at ``seq``."""
        return Envelope(
            conv=self.conv,
            seq=seq,
            id=self.id,
            sender=self.sender,
            sender_device=self.sender_device,
            ts=self.ts,
            payload=self.payload,
            mentions=list(self.mentions),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceQueued:
    """Outcome of :meth:`Store.queue_to_devices`: what was queued for each target device (empty
    for a resend of an id already queued), and the targets refused as ``unknown``."""

    queued: tuple[tuple[tuple[str, int], DeviceEnvelope], ...]
    unknown: tuple[str, ...]
    duplicate: bool


@dataclasses.dataclass(frozen=True, slots=True)
class NewDeviceLink:
    """An approval of a provisioning request (see :meth:`Store.approve_provisioning`)."""

    provisioning_id: str
    account_id: str
    device_name: str
    ephemeral_key: bytes
    sealed: bytes
    #: the new device's token until the new device fetches the result: nobody knows its secret
    placeholder_key: str
    placeholder_hash: bytes
    max_devices: int
    now: int


@dataclasses.dataclass(frozen=True, slots=True)
class LinkedDevice:
    """A fetched provisioning result: the new device and the sealed provisioning message."""

    account_id: str
    username: str
    device_id: int
    sealed: bytes
    #: False when the new device chose its own token (the one offered was not stored)
    token_made: bool = True


class Appended(msgspec.Struct, frozen=True):
    """Outcome of :meth:`Store.append`: the stored envelope (the original one if ``duplicate``)
    and the member accounts to fan it out to."""

    envelope: Envelope
    recipients: tuple[str, ...]
    duplicate: bool


@dataclasses.dataclass(frozen=True, slots=True)
class MembershipChange:
    """Outcome of an operation that wrote a system envelope.

    ``recipients`` are the accounts that get the envelope: the members after the change plus
    the ones it removed. ``conversation`` is the state after the change.
    """

    conversation: ConversationRecord
    envelope: Envelope
    recipients: tuple[str, ...]


class WatermarkMove(msgspec.Struct, frozen=True):
    """A member's watermarks rose. ``senders`` are the accounts with messages of their own in
    the newly covered seq range, i.e. who should hear about it."""

    conv: str
    account: str
    delivered: int
    read: int
    senders: tuple[str, ...]
    #: when the delivered (read) watermark last moved (ms), if known
    delivered_at: int | None = None
    read_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NewConversation:
    """What :meth:`Store.create_direct`/:meth:`Store.create_group` need besides the members."""

    conv_id: str
    event_id: uuid.UUID
    actor: str
    actor_device: int
    now: int


@dataclasses.dataclass(frozen=True, slots=True)
class PrivacyFacts:
    """What the receipt, typing and blocking rules need to know about a viewer and some
    accounts and conversations (the "social" tables; tidings.server.social)."""

    #: accounts that block the viewer
    blocking_viewer: frozenset[str]
    #: accounts the viewer blocks
    blocked_by_viewer: frozenset[str]
    #: accounts (the viewer included) that turned read receipts off
    receipts_off: frozenset[str]
    #: accounts (the viewer included) that turned typing indicators off
    typing_off: frozenset[str]
    #: the direct conversations among those asked about
    direct: frozenset[str]
