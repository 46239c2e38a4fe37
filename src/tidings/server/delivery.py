"""The delivery service: persist, sequence, fan out, receipts (docs/architecture.md).

Every operation goes to the :class:`~tidings.server.store.base.Store` first and only then to the
:class:`~tidings.server.bus.base.Bus`: a frame reaches a live connection only once what it
announces is durable, and a device that misses the live copy finds it in its pending queue.
The service does no I/O of its own and keeps no state between calls.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

import msgspec

from tidings.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Accepted,
    Batch,
    DeviceAccepted,
    DeviceEnvelope,
    DeviceSend,
    Envelope,
    Error,
    ErrorCode,
    Receipt,
    Rejected,
    Send,
    StaleDevices,
    Watermark,
    Welcome,
    encode,
)
from tidings.server.bus import Bus, Delivery
from tidings.server.channels.service import ChannelService
from tidings.server.groupadds import GroupAddGate
from tidings.server.push.hook import PushHook
from tidings.server.sendlimits import SendLimiter, SendOrder
from tidings.server.social import SocialService
from tidings.server.store import (
    ConversationRecord,
    MembershipChange,
    NewConversation,
    NewMessage,
    Refused,
    StaleDeviceList,
    Store,
    WatermarkMove,
)

#: Most accounts one mention list may name.
MAX_MENTIONS = 1000
#: Most devices one DeviceSend may address (the frame size limit usually bites first).
MAX_DEVICE_TARGETS = 5000
#: Length of Send.devices_digest (SHA-256) when present.
DIGEST_BYTES = 32
#: Generous bound on what an envelope adds to its payload and mentions when encoded.
_ENVELOPE_OVERHEAD = 256
#: Room for envelopes in one Batch frame.
_BATCH_BUDGET = MAX_FRAME_BYTES - 1024
#: Most watermarks put into a Welcome (about 100 bytes each); the rest follow as Receipts.
MAX_WELCOME_WATERMARKS = 1000
#: Most heads in one Welcome (~45 bytes each): it must stay well below MAX_FRAME_BYTES even
#: for an account that others have put into thousands of groups.
MAX_WELCOME_HEADS = 2000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    """An opaque, unguessable server-made id such as ``c3f9…``."""
    return prefix + uuid.uuid4().hex


def parse_address(address: str) -> tuple[str, int]:
    """``"<account>:<device>"`` (already checked against the DeviceAddress pattern)."""
    account, _, device = address.rpartition(":")
    return account, int(device)


@dataclasses.dataclass(frozen=True, slots=True)
class Device:
    """An authenticated device: who is asking."""

    account_id: str
    device_id: int
    username: str = ""
    device_name: str = ""

    @property
    def address(self) -> tuple[str, int]:
        return (self.account_id, self.device_id)


class DeliveryService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        *,
        member_cap: int = 1000,
        require_e2ee: bool = False,
        clock: Callable[[], int] = now_ms,
        limiter: SendLimiter | None = None,
        quota_bytes: int = 0,
        retention_days: int = 30,
        group_adds: GroupAddGate | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.member_cap = member_cap
        #: rate limits of Sends and DeviceSends (None: unlimited)
        self.limiter = limiter
        #: envelope bytes one account may have stored at once (0: unlimited)
        self.quota_bytes = quota_bytes
        #: days a stored envelope is kept at most
        self.retention_days = retention_days
        #: refuse Sends that carry neither device_payloads nor a devices_digest
        self.require_e2ee = require_e2ee
        #: consent and rate limits of group adds (None: anybody may add anybody, unlimited)
        self.group_adds = group_adds
        self.clock = clock
        #: told after a message, receipt or membership change is stored, to wake offline
        #: devices (None: no push); returns at once
        self.push: PushHook | None = None
        #: broadcast channels (tidings.server.channels; None: this server has none)
        self.channels: ChannelService | None = None
        #: receipt privacy, blocking and typing (tidings.server.social; None: none of it)
        self.social: SocialService | None = None

    # ------------------------------------------------------------------ messages

    async def send(
        self, device: Device, frame: Send, order: SendOrder | None = None
    ) -> Accepted | Rejected | StaleDevices:
        """Store one message and fan it out; a resend of a stored id gets the original seq.
        A Send whose device list is out of date gets StaleDevices and stores nothing.
        ``order`` is the connection's order gate (:class:`SendOrder`): a Send that follows a
        message the limiter refused is refused until that message has gone to the store."""
        # Sizes once: the checks and the limiter both need them.
        payloads = frame.device_payloads
        if payloads:
            sizes = [len(c) for c in payloads.values()]
            largest, own_bytes = max(sizes), sum(sizes)
        else:
            largest = own_bytes = 0
        mentions_size = _mentions_size(frame.mentions) if frame.mentions else 0
        problem = self._check_send(frame, largest, mentions_size)
        if problem is not None:
            if order is not None:
                order.passed(frame.conv, frame.id)
            code, text = problem
            return Rejected(id=frame.id, conv=frame.conv, code=code, message=text)
        if self.limiter is not None:
            # Decided before the first await: Sends of one connection pass here in the order
            # they arrived, and so take their places in the store's per-conversation queue.
            if order is not None and order.waits(frame.conv, frame.id):
                return Rejected(
                    id=frame.id,
                    conv=frame.conv,
                    code=ErrorCode.RATE_LIMITED,
                    message="an earlier message of this conversation waits: send again later",
                )
            size = len(frame.payload) + own_bytes + mentions_size
            if not self.limiter.admit(device.account_id, device.device_id, size):
                if order is not None:
                    order.refused(frame.conv, frame.id)
                return Rejected(
                    id=frame.id,
                    conv=frame.conv,
                    code=ErrorCode.RATE_LIMITED,
                    message="too many messages: send again later",
                )
            if order is not None:
                order.passed(frame.conv, frame.id)
        message = NewMessage(
            id=frame.id,
            conv=frame.conv,
            sender=device.account_id,
            sender_device=device.device_id,
            payload=frame.payload,
            mentions=tuple(frame.mentions),
            ts=self.clock(),
            device_payloads=tuple(
                (parse_address(address), ciphertext) for address, ciphertext in payloads.items()
            )
            if payloads
            else (),
            devices_digest=frame.devices_digest,
        )
        try:
            appended = await self.store.append(message, quota=self.quota_bytes)
        except Refused as refused:
            return Rejected(
                id=frame.id, conv=frame.conv, code=refused.code, message=refused.message
            )
        except StaleDeviceList as stale:
            return StaleDevices(
                id=frame.id,
                conv=frame.conv,
                missing=stale.missing,
                extra=stale.extra,
                devices=stale.devices,
            )
        envelope = appended.envelope
        if not appended.duplicate:
            own = {
                address: Delivery(
                    encode(msgspec.structs.replace(envelope, device_payload=ciphertext)),
                    envelope.conv,
                    envelope.seq,
                )
                for address, ciphertext in message.device_payloads
            }
            await self._publish(envelope, appended.recipients, skip=device.address, own=own)
            if self.push is not None:
                self.push.message(envelope, appended.recipients, device.address, quiet=frame.quiet)
        return Accepted(id=envelope.id, conv=envelope.conv, seq=envelope.seq, ts=envelope.ts)

    def _check_send(
        self, frame: Send, largest: int, mentions_size: int
    ) -> tuple[ErrorCode, str] | None:
        """What is wrong with a Send before the store sees it, if anything (``largest``: its
        largest device payload; ``mentions_size``: what its mentions count)."""
        if len(frame.payload) + largest + mentions_size > MAX_PAYLOAD_BYTES:
            return (
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"payload, device payload and mentions over {MAX_PAYLOAD_BYTES} bytes",
            )
        if len(frame.mentions) > MAX_MENTIONS:
            return ErrorCode.BAD_FRAME, "too many mentions"
        if frame.devices_digest and len(frame.devices_digest) != DIGEST_BYTES:
            return ErrorCode.BAD_FRAME, f"devices_digest must be {DIGEST_BYTES} bytes"
        if self.require_e2ee and not frame.device_payloads and not frame.devices_digest:
            return ErrorCode.BAD_FRAME, "this server requires end-to-end encrypted messages"
        return None

    async def device_send(self, device: Device, frame: DeviceSend) -> DeviceAccepted | Error:
        """Queue messages for single devices and deliver them to the ones online."""
        if len(frame.messages) > MAX_DEVICE_TARGETS:
            return Error(
                code=ErrorCode.BAD_FRAME,
                message=f"at most {MAX_DEVICE_TARGETS} devices per dsend",
                ref=str(frame.id),
            )
        if any(len(payload) > MAX_PAYLOAD_BYTES for payload in frame.messages.values()):
            return Error(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"a device message is over {MAX_PAYLOAD_BYTES} bytes",
                ref=str(frame.id),
            )
        if self.limiter is not None and not self.limiter.admit(
            device.account_id,
            device.device_id,
            sum(len(payload) for payload in frame.messages.values()),
        ):
            return Error(
                code=ErrorCode.RATE_LIMITED,
                message="too many messages: send again later",
                ref=str(frame.id),
            )
        messages = [
            (address, parse_address(address), payload)
            for address, payload in frame.messages.items()
        ]
        if self.social is not None:  # nothing reaches an account that blocks the sender
            messages = await self.social.drop_blocked(device.account_id, messages)
        queued = await self.store.queue_to_devices(device.address, frame.id, messages, self.clock())
        for (account, device_id), envelope in queued.queued:
            await self.bus.to_device(
                account, device_id, Delivery(encode(envelope), dseq=envelope.dseq)
            )
        return DeviceAccepted(id=frame.id, unknown=list(queued.unknown))

    async def replay_devices(
        self, device: Device, *, page: int = MAX_BATCH
    ) -> AsyncIterator[DeviceEnvelope]:
        """The device's to-device queue in dseq order."""
        after = 0
        while True:
            envelopes = await self.store.device_queue(
                device.account_id, device.device_id, after, page
            )
            for envelope in envelopes:
                yield envelope
            if len(envelopes) < page:
                return
            after = envelopes[-1].dseq

    async def device_map(self, device: Device, conv: str) -> dict[str, list[int]]:
        """Every member's devices with keys. Raises ``Refused`` NOT_FOUND/NOT_MEMBER."""
        await self.conversation_for(device, conv)
        return await self.store.device_map(conv)

    async def fetch(self, device: Device, conv: str, after: int, limit: int) -> Batch:
        """Envelopes of ``conv`` after ``after`` (from where the member joined at the
        earliest). Raises ``Refused`` NOT_FOUND/NOT_MEMBER."""
        record = await self.conversation_for(device, conv)
        me = record.member(device.account_id)
        assert me is not None  # conversation_for checked membership
        start = max(after, me.joined_seq - 1)
        envelopes = await self.store.envelopes(conv, start, min(limit, MAX_BATCH), device.address)
        # Only as many as fit in one frame; the device asks again after the last one.
        first = next(iter(fit_batches(envelopes)), [])
        return Batch(conv=conv, envelopes=first, head=record.last_seq)

    # ------------------------------------------------------------------ connecting

    async def welcome(
        self, device: Device, cursors: Mapping[str, int] | None = None
    ) -> tuple[Welcome, list[Receipt]]:
        """The Welcome for a device that just said Hello, and the Receipt frames to send
        after it for the watermarks that did not fit into it (Welcome must stay well below
        MAX_FRAME_BYTES, and an account posting in several big groups has many).

        Heads are given only where the device's cursor is behind, and at most
        MAX_WELCOME_HEADS of them: they are a hint for catching up, while the pending queue
        replayed after the Welcome carries every envelope the device has not acked."""
        now = self.clock()
        known = cursors or {}
        heads = {
            conv: head
            for conv, head in (await self.store.heads(device.account_id)).items()
            if head > known.get(conv, 0)
        }
        if len(heads) > MAX_WELCOME_HEADS:
            heads = dict(
                sorted(heads.items(), key=lambda item: item[1] - known.get(item[0], 0))[
                    -MAX_WELCOME_HEADS:
                ]
            )
        marks = await self.store.welcome_watermarks(device.account_id, device.device_id, now)
        if self.social is not None:
            marks = await self.social.mask(device.account_id, marks)
        welcome = Welcome(
            version=PROTOCOL_VERSION,
            account_id=device.account_id,
            device_id=device.device_id,
            server_ts=now,
            heads=heads,
            watermarks=marks[:MAX_WELCOME_WATERMARKS],
        )
        overflow = [
            Receipt(
                conv=w.conv,
                account=w.account,
                delivered=w.delivered,
                read=w.read,
                delivered_at=w.delivered_at,
                read_at=w.read_at,
            )
            for w in marks[MAX_WELCOME_WATERMARKS:]
        ]
        return welcome, overflow

    async def replay(
        self, device: Device, heads: Mapping[str, int], *, page: int = MAX_BATCH
    ) -> AsyncIterator[Batch]:
        """The device's pending queue as Batch frames, per conversation in seq order."""
        position = ("", 0)
        while True:
            envelopes = await self.store.pending(
                device.account_id, device.device_id, position, page
            )
            if not envelopes:
                return
            for conv, run in _by_conversation(envelopes):
                head = max(heads.get(conv, 0), run[-1].seq)
                for group in fit_batches(run):
                    yield Batch(conv=conv, envelopes=group, head=head)
            last = envelopes[-1]
            position = (last.conv, last.seq)
            if len(envelopes) < page:
                return

    # ------------------------------------------------------------------ receipts

    async def ack(self, device: Device, upto: Mapping[str, int], device_upto: int = 0) -> None:
        """The device stored everything up to ``upto[conv]`` (and its to-device messages up to
        ``device_upto``): drop it from its queues, raise the account's delivered watermarks and
        tell whoever is concerned."""
        if device_upto > 0:
            await self.store.ack_device_queue(device.account_id, device.device_id, device_upto)
        if not upto:
            return
        moves = await self.store.ack(device.account_id, device.device_id, upto, self.clock())
        for move in moves:
            await self._relay(move, device)

    async def read(self, device: Device, conv: str, seq: int) -> None:
        """Raises ``Refused`` NOT_FOUND/NOT_MEMBER."""
        move = await self.store.mark_read(device.account_id, conv, seq, self.clock())
        if move is not None:
            await self._relay(move, device)

    async def _relay(self, move: WatermarkMove, device: Device) -> None:
        receipt = Receipt(
            conv=move.conv,
            account=move.account,
            delivered=move.delivered,
            read=move.read,
            delivered_at=move.delivered_at,
            read_at=move.read_at,
        )
        # Senders of the newly covered messages, and the member's own other devices.
        if self.social is None:
            await self.bus.to_accounts(
                (*move.senders, move.account), Delivery(encode(receipt)), skip=device.address
            )
        else:  # as receipt privacy and blocking allow
            for accounts, frame in await self.social.receipts(move, receipt):
                await self.bus.to_accounts(accounts, Delivery(encode(frame)), skip=device.address)
        if self.push is not None:
            self.push.receipt(move, device.address)

    async def receipts(self, device: Device, conv: str) -> list[Watermark]:
        await self.conversation_for(device, conv)
        marks = await self.store.watermarks(conv)
        return marks if self.social is None else await self.social.mask(device.account_id, marks)

    # ------------------------------------------------------------------ conversations

    async def conversation_for(self, device: Device, conv: str) -> ConversationRecord:
        """The conversation, if ``device``'s account is a member. Raises ``Refused``."""
        record = await self.store.conversation(conv)
        if record is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
        if record.member(device.account_id) is None:
            raise Refused(ErrorCode.NOT_MEMBER, "not a member of this conversation")
        return record

    async def conversations(self, device: Device) -> list[ConversationRecord]:
        return await self.store.conversations_of(device.account_id)

    async def create_direct(self, device: Device, username: str) -> tuple[ConversationRecord, bool]:
        """The direct conversation with ``username``, and whether it was made just now. With
        the caller's own username it is the account's note to self: a direct conversation
        whose only member is the account (its devices write to each other)."""
        (peer,) = await self._accounts([username])
        change, created = await self.store.create_direct(self._new(device), peer)
        if created:
            await self._announce(change)
        return change.conversation, created

    async def create_group(
        self, device: Device, title: str, usernames: Sequence[str]
    ) -> ConversationRecord:
        members = await self._accounts(usernames)
        await self._admit_adds(device, usernames, members)
        change = await self.store.create_group(self._new(device), title, members, self.member_cap)
        await self._announce(change)
        return change.conversation

    async def add_members(
        self, device: Device, conv: str, usernames: Sequence[str]
    ) -> ConversationRecord:
        accounts = await self._accounts(usernames)
        await self._admit_adds(device, usernames, accounts)
        change = await self.store.add_members(
            conv,
            device.account_id,
            accounts,
            self.member_cap,
            uuid.uuid4(),
            device.device_id,
            self.clock(),
        )
        await self._announce(change)
        return change.conversation

    async def remove_member(self, device: Device, conv: str, username: str) -> ConversationRecord:
        (account,) = await self._accounts([username])
        change = await self.store.remove_member(
            conv, device.account_id, account, uuid.uuid4(), device.device_id, self.clock()
        )
        await self._announce(change)
        return change.conversation

    async def leave(self, device: Device, conv: str) -> None:
        change = await self.store.leave(
            conv, device.account_id, uuid.uuid4(), device.device_id, self.clock()
        )
        await self._announce(change)

    async def collect_envelopes(self, *, batch: int = 1000) -> int:
        """Drop the stored envelopes every member device has acked, and every envelope older
        than the retention period, ``batch`` at a time (each batch one write transaction);
        returns how many. See :meth:`~tidings.server.store.base.Store.collect_envelopes`."""
        total = 0
        while True:
            cutoff = self.clock() - self.retention_days * 86_400_000
            collected = await self.store.collect_envelopes(cutoff, batch)
            total += collected
            if collected < batch:
                return total

    async def purge_expired(self, ttl_days: int) -> int:
        """Drop pending entries and to-device messages older than ``ttl_days``, and expired
        provisioning requests; returns how many."""
        now = self.clock()
        purged = await self.store.purge_pending(now - ttl_days * 86_400_000)
        return purged + await self.store.purge_provisioning(now)

    # ------------------------------------------------------------------ helpers

    def _new(self, device: Device) -> NewConversation:
        return NewConversation(
            conv_id=new_id("c"),
            event_id=uuid.uuid4(),
            actor=device.account_id,
            actor_device=device.device_id,
            now=self.clock(),
        )

    async def _admit_adds(
        self, device: Device, usernames: Sequence[str], accounts: Sequence[str]
    ) -> None:
        """Refuse adding ``accounts`` to a group without their consent or over a rate limit
        (:class:`~tidings.server.groupadds.GroupAddGate`)."""
        if self.group_adds is not None:
            targets = dict(zip(accounts, usernames, strict=True))
            await self.group_adds.admit(device.account_id, targets)

    async def _accounts(self, usernames: Sequence[str]) -> list[str]:
        """Account ids of ``usernames`` in order. Raises NOT_FOUND naming the unknown ones."""
        found = await self.store.accounts_by_username(usernames)
        missing = [u for u in usernames if u not in found]
        if missing:
            raise Refused(ErrorCode.NOT_FOUND, "no such user: " + ", ".join(sorted(set(missing))))
        return [found[u].account_id for u in usernames]

    async def _announce(self, change: MembershipChange) -> None:
        await self._publish(change.envelope, change.recipients, skip=None)
        if self.push is not None:
            self.push.membership(change)

    async def _publish(
        self,
        envelope: Envelope,
        accounts: Iterable[str],
        *,
        skip: tuple[str, int] | None,
        own: Mapping[tuple[str, int], Delivery] | None = None,
    ) -> None:
        # Encoded once, whatever the number of recipients (plus once per device that has its
        # own ciphertext).
        delivery = Delivery(encode(envelope), envelope.conv, envelope.seq)
        await self.bus.to_accounts(accounts, delivery, skip=skip, own=own)


def _by_conversation(envelopes: list[Envelope]) -> Iterable[tuple[str, list[Envelope]]]:
    """Split a list sorted by conversation into runs of one conversation each."""
    start = 0
    for i in range(1, len(envelopes) + 1):
        if i == len(envelopes) or envelopes[i].conv != envelopes[start].conv:
            yield envelopes[start].conv, envelopes[start:i]
            start = i


def _mentions_size(mentions: Sequence[str]) -> int:
    return sum(len(m) + 2 for m in mentions)


def envelope_size(envelope: Envelope) -> int:
    """An upper estimate of the encoded size of an envelope (ids, times and keys included)."""
    return (
        len(envelope.payload)
        + len(envelope.device_payload)
        + _mentions_size(envelope.mentions)
        + _ENVELOPE_OVERHEAD
    )


def fit_batches(envelopes: list[Envelope]) -> Iterable[list[Envelope]]:
    """Split envelopes into runs whose Batch frame stays within MAX_FRAME_BYTES. Every single
    envelope fits: a Send's payload and mentions are capped at MAX_PAYLOAD_BYTES."""
    start, size = 0, 0
    for i, envelope in enumerate(envelopes):
        grows = envelope_size(envelope)
        if i > start and size + grows > _BATCH_BUDGET:
            yield envelopes[start:i]
            start, size = i, 0
        size += grows
    if start < len(envelopes):
        yield envelopes[start:]
