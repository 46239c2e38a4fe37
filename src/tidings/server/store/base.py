"""What the server needs from its database, independent of the engine behind it.

Every method is one atomic operation: the rules that must hold under concurrency (a gapless seq,
the member cap, admin rights, idempotent sends) are checked inside the same transaction that
changes the state. A refused operation raises :class:`Refused` and changes nothing.

Times are milliseconds since the Unix epoch, supplied by the caller so tests control the clock.
The records and the rules a store applies are in :mod:`tidings.server.domain`; each back end
is a package beside this module (``sqlite/``) with one module per part of the state.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from tidings.protocol import DeviceEnvelope, Envelope, Watermark
from tidings.protocol.keys import KeyCounts, KeyUpload, PreKeyBundles
from tidings.protocol.rest import GroupAdds
from tidings.server.domain.records import (
    AccountRecord,
    Appended,
    ConversationKind,
    ConversationRecord,
    DeviceQueued,
    DeviceRecord,
    LinkedDevice,
    MemberRecord,
    MembershipChange,
    NewConversation,
    NewDeviceLink,
    NewMessage,
    Refused,
    Role,
    StaleDeviceList,
    WatermarkMove,
)

__all__ = [
    "AccountRecord",
    "Appended",
    "ConversationKind",
    "ConversationRecord",
    "DeviceQueued",
    "DeviceRecord",
    "LinkedDevice",
    "MemberRecord",
    "MembershipChange",
    "NewConversation",
    "NewDeviceLink",
    "NewMessage",
    "Refused",
    "Role",
    "StaleDeviceList",
    "Store",
    "WatermarkMove",
]


class Store(Protocol):
    """The server's persistent state. Implementations: :mod:`tidings.server.store.sqlite`."""

    async def open(self) -> None:
        """Create or migrate the schema and get ready; called once before anything else."""

    async def close(self) -> None:
        """Finish queued writes and release every resource."""

    # ------------------------------------------------------------------ accounts and devices

    async def create_account(
        self,
        *,
        account_id: str,
        username: str,
        device_name: str,
        token_key: str,
        token_hash: bytes,
        now: int,
    ) -> None:
        """Create an account with device 1. Raises ``Refused(USERNAME_TAKEN)``."""

    async def create_account_once(
        self,
        *,
        account_id: str,
        username: str,
        device_name: str,
        token_key: str,
        token_hash: bytes,
        now: int,
    ) -> str:
        """A retried sign-up with a token the client chose: create the account as
        :meth:`create_account` does, or, when ``username`` exists and its device 1 has this
        very token, return that account's id (the answer to the first try was lost). Raises
        ``Refused(USERNAME_TAKEN)`` for another token, ``Refused(CONFLICT)`` for a token key
        some device has already."""

    async def device_by_token_key(self, token_key: str) -> DeviceRecord | None:
        """The device whose token has this lookup key."""

    async def accounts_by_username(self, usernames: Sequence[str]) -> dict[str, AccountRecord]:
        """Existing accounts among ``usernames``, keyed by username."""

    # ------------------------------------------------------------------ account settings

    async def group_adds(self, account_id: str) -> GroupAdds:
        """Who may add the account to a group (``everyone`` unless it said otherwise)."""

    async def set_group_adds(self, account_id: str, value: GroupAdds) -> None: ...

    async def refusing_group_adds(self, actor: str, targets: Sequence[str]) -> list[str]:
        """Those of ``targets`` (but ``actor``) that take group adds only from contacts and
        for whom ``actor`` is none: they share no direct conversation in which the target has
        sent a message."""

    # ------------------------------------------------------------------ conversations

    async def conversation(self, conv_id: str) -> ConversationRecord | None: ...

    async def heads(self, account_id: str) -> dict[str, int]:
        """Conversation id -> last seq, for every conversation the account is a member of."""

    async def conversations_of(self, account_id: str) -> list[ConversationRecord]:
        """Every conversation the account is a member of, oldest first."""

    async def create_direct(self, new: NewConversation, peer: str) -> tuple[MembershipChange, bool]:
        """The direct conversation of ``new.actor`` and ``peer``: the existing one (``False``,
        with the ``created`` envelope it started with) or a new one (``True``)."""

    async def create_group(
        self, new: NewConversation, title: str, members: Sequence[str], cap: int
    ) -> MembershipChange:
        """A group with ``new.actor`` as admin and ``members`` (other accounts) as members.
        Raises ``Refused(GROUP_FULL)`` if that is more than ``cap`` accounts."""

    async def add_members(
        self,
        conv_id: str,
        actor: str,
        accounts: Sequence[str],
        cap: int,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        """Admin ``actor`` adds ``accounts``. Raises NOT_FOUND, NOT_A_GROUP, NOT_MEMBER,
        FORBIDDEN (not an admin), ALREADY_MEMBER or GROUP_FULL."""

    async def remove_member(
        self,
        conv_id: str,
        actor: str,
        account: str,
        event_id: uuid.UUID,
        actor_device: int,
        now: int,
    ) -> MembershipChange:
        """Admin ``actor`` removes ``account``, who still receives the ``member_removed``
        envelope. Raises NOT_FOUND, NOT_A_GROUP, NOT_MEMBER or FORBIDDEN."""

    async def leave(
        self, conv_id: str, account: str, event_id: uuid.UUID, device: int, now: int
    ) -> MembershipChange:
        """``account`` leaves; if it was the last admin, the oldest remaining member becomes
        admin. Raises NOT_FOUND, NOT_A_GROUP or NOT_MEMBER."""

    # ------------------------------------------------------------------ messages

    async def append(self, message: NewMessage, *, quota: int = 0) -> Appended:
        """Store a message with the next seq and queue it for every device of every member
        except the sending device. A message whose (sender, id) is already stored is not
        stored again: the original comes back with ``duplicate=True`` (within the retention
        period, also once its body was collected: then with an empty payload). Raises
        NOT_FOUND or NOT_MEMBER, or QUOTA_EXCEEDED when ``quota`` > 0 and the sender's stored
        bytes (:meth:`stored_bytes`) plus this message's would be more. The message's bytes
        (payload, mentions, per-device ciphertexts) are added to the sender's stored bytes in
        the same transaction."""

    async def envelopes(
        self, conv_id: str, after: int, limit: int, device: tuple[str, int] | None = None
    ) -> list[Envelope]:
        """Stored envelopes with ``seq > after`` in seq order; with ``device``, each carries
        that device's own ciphertext while it is still pending."""

    async def pending(
        self, account_id: str, device_id: int, after: tuple[str, int], limit: int
    ) -> list[Envelope]:
        """The device's pending queue in (conversation, seq) order, starting after the
        position ``after`` (use ``("", 0)`` for the start), with its own ciphertexts."""

    async def collect_envelopes(self, older_than: int, limit: int) -> int:
        """Collect up to ``limit`` stored envelopes in one transaction; returns how many.

        An envelope stored before ``older_than`` (past the retention period) is deleted with
        its pending entries. An envelope that no device has pending any more and that every
        member but its sender has delivered (watermark) loses its body: its row stays, without
        payload and mentions, for idempotent resends and for the senders of receipts, until
        the retention period deletes it. ``envelopes`` (Fetch) skips both; a conversation's
        ``last_seq`` and so its next seq never change. Each collected envelope's bytes are
        taken off its sender's stored bytes in the same transaction."""

    async def stored_bytes(self, account_id: str) -> int:
        """Bytes of envelopes ``account_id`` sent that are still held (its quota counter)."""

    async def purge_pending(self, older_than: int) -> int:
        """Drop pending entries and to-device messages queued before ``older_than`` (and the
        DeviceSend idempotency records of that age); returns how many entries."""

    # ------------------------------------------------------------------ end-to-end encryption

    async def upload_keys(
        self,
        account_id: str,
        device_id: int,
        upload: KeyUpload,
        now: int,
        *,
        dropped: list[int] | None = None,
    ) -> KeyCounts:
        """Store the device's public key material (sizes and type bytes already checked).
        Raises ``Refused(CONFLICT)`` for an identity key that differs from the account's
        without ``replace_identity``, ``Refused(BAD_FRAME)`` for a device's first upload
        without a signed prekey and a last-resort Kyber prekey. A replaced identity removes
        the account's other devices in the same transaction, as :meth:`remove_device` does;
        their ids are appended to ``dropped``."""

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        """Delete a device: its row (so its token stops working), pending rows, to-device
        queue, key material and any unfetched link. ``False`` if it does not exist."""

    async def key_counts(self, account_id: str, device_id: int) -> KeyCounts: ...

    async def claim_keys(
        self, requester: tuple[str, int], wanted: Mapping[str, Sequence[int]]
    ) -> list[PreKeyBundles]:
        """Bundles of the devices with keys of each account (of the named devices, or all when
        the list is empty), never the requesting device, taking one one-time prekey of each
        kind per device at most once ever. Accounts without keys are left out."""

    async def device_map(self, conv_id: str) -> dict[str, list[int]]:
        """Every member of the conversation → its devices that have keys, in id order."""

    async def queue_to_devices(
        self,
        sender: tuple[str, int],
        msg_id: uuid.UUID,
        messages: Sequence[tuple[str, tuple[str, int], bytes]],
        now: int,
    ) -> DeviceQueued:
        """Queue ``(address, (account, device), payload)`` messages for devices with keys that
        are the sender's own other devices or belong to an account sharing a conversation with
        it; the rest come back as ``unknown``. Once per (sender device, ``msg_id``)."""

    async def device_queue(
        self, account_id: str, device_id: int, after: int, limit: int
    ) -> list[DeviceEnvelope]:
        """The device's to-device messages with ``dseq > after`` in dseq order."""

    async def ack_device_queue(self, account_id: str, device_id: int, upto: int) -> int:
        """Drop the device's to-device messages with ``dseq <= upto``; returns how many."""

    async def create_provisioning(
        self, provisioning_id: str, secret_hash: bytes, ephemeral_key: bytes, now: int, ttl: int
    ) -> None: ...

    async def create_provisioning_once(
        self,
        provisioning_id: str,
        secret_hash: bytes,
        ephemeral_key: bytes,
        token: tuple[str, bytes],
        now: int,
        ttl: int,
    ) -> tuple[str, int]:
        """A request whose secret and device ``token`` (key, secret hash) the new device chose:
        (id, expires_at) of the live request with this ephemeral key and secret if there is
        one (a retry), else of a new one. Its approval makes the device with that token, and
        its result can be fetched again until it expires. Raises ``Refused(CONFLICT)`` for a
        token key some device or request has already."""

    async def approve_provisioning(self, link: NewDeviceLink) -> int:
        """Create the new device of ``link.account_id`` (next free id) and attach it to the
        request; returns its id. Raises NOT_FOUND, EXPIRED, CONFLICT (already approved, or
        another ephemeral key) or FORBIDDEN (too many devices)."""

    async def fetch_provisioning(
        self, provisioning_id: str, secret_hash: bytes, token_key: str, token_hash: bytes, now: int
    ) -> LinkedDevice:
        """Give the approved device its real token and forget the request. Raises NOT_FOUND,
        UNAUTHORIZED (wrong secret), EXPIRED or PENDING (not approved yet)."""

    async def purge_provisioning(self, now: int) -> int:
        """Forget expired requests, with the devices made for approved ones never fetched."""

    # ------------------------------------------------------------------ receipts

    async def ack(
        self, account_id: str, device_id: int, upto: Mapping[str, int], now: int
    ) -> list[WatermarkMove]:
        """Drop the device's pending entries up to ``upto[conv]`` and raise the account's
        delivered watermarks accordingly (only in conversations it is a member of)."""

    async def mark_read(
        self, account_id: str, conv_id: str, seq: int, now: int
    ) -> WatermarkMove | None:
        """Raise the read watermark (and delivered to at least it). ``None`` if nothing moved.
        Raises NOT_FOUND or NOT_MEMBER."""

    async def watermarks(self, conv_id: str) -> list[Watermark]:
        """Every member's watermarks."""

    async def welcome_watermarks(
        self, account_id: str, device_id: int, now: int
    ) -> list[Watermark]:
        """The watermarks a device needs when it (re)connects, in the conversations where its
        account has sent messages: every other member's where one of them has not read them
        all yet, plus any that moved since the device's previous Welcome. Records ``now`` as
        the time of this Welcome."""
