"""Typing indicators, receipt privacy and blocking on the server (docs/e2ee.md, "Profiles,
receipts, typing and blocking").

- **Typing** (:meth:`SocialService.typing`): a ``Typing`` frame is relayed at once, as
  ``TypingNotice``, to the connected devices of the conversation's other members and the
  sender's own other devices; nothing is stored or queued. Limited per device
  (``typing_per_minute``, excess dropped silently); dropped when the sender turned typing
  indicators off; never relayed to a member who turned them off, nor between accounts of a
  direct conversation where one blocks the other.
- **Read receipts** (:meth:`SocialService.receipts`, :meth:`SocialService.mask`): an account
  with ``read_receipts`` off keeps its read watermark (its own devices sync through it), but
  others are told only its delivered watermark, and it is told only the delivered watermarks
  of others. Enforced here, so a modified client of the reader cannot get around it.
- **Blocking**: in a direct conversation, the blocked account's messages get no pending row
  and no live copy for the blocker (``store_envelope``, Fetch leaves them out) while its Send
  is accepted as usual; its DeviceSends to the blocker's devices are dropped (not listed as
  unknown either); and it hears none of the blocker's receipts there, so its statuses stop
  at ``sent``. In groups the server cannot tell content apart: the blocker's client hides it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import msgspec

from tidings.protocol import ErrorCode, Receipt, TypingNotice, Watermark, encode
from tidings.protocol.frames import Typing
from tidings.protocol.social import BlockedAccount, DeviceInfo, Profile
from tidings.server.bus import Bus, Delivery
from tidings.server.domain.records import ConversationRecord, PrivacyFacts, WatermarkMove
from tidings.server.ratelimit import RateLimiter

#: Typing frames one device may send per minute (a client sends one every 3 s while typing).
TYPING_PER_MINUTE = 60


class SocialStore(Protocol):
    async def conversation(self, conv_id: str) -> ConversationRecord | None: ...

    async def put_profile(
        self, account_id: str, version: int, blob: bytes, now: int
    ) -> Profile: ...

    async def profile(self, account_id: str) -> Profile | None: ...

    async def block(self, blocker: str, blocked: str, now: int) -> None: ...

    async def unblock(self, blocker: str, blocked: str) -> None: ...

    async def blocked_accounts(self, blocker: str) -> list[BlockedAccount]: ...

    async def privacy(self, account_id: str) -> tuple[bool, bool]: ...

    async def set_privacy(
        self, account_id: str, read_receipts: bool | None, typing: bool | None
    ) -> None: ...

    async def privacy_facts(
        self, viewer: str, accounts: Iterable[str], convs: Iterable[str] = ()
    ) -> PrivacyFacts: ...

    async def device_list(self, account_id: str) -> list[DeviceInfo]: ...


def _hide_read(mark: Receipt) -> Receipt:
    return msgspec.structs.replace(mark, read=0, read_at=None)


class SocialService:
    def __init__(
        self,
        store: SocialStore,
        bus: Bus,
        *,
        typing_per_minute: int = TYPING_PER_MINUTE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self._typing = (
            RateLimiter(typing_per_minute)
            if clock is None
            else RateLimiter(typing_per_minute, clock=clock)
        )

    # ------------------------------------------------------------------ typing

    async def typing(self, account_id: str, device_id: int, frame: Typing) -> ErrorCode | None:
        """Relay a Typing frame; the error code when it is refused (``not_member``,
        ``not_found``), None when relayed or silently dropped (rate limit, settings)."""
        if not self._typing.allow(f"{account_id}:{device_id}"):
            return None
        record = await self.store.conversation(frame.conv)
        if record is None:
            return ErrorCode.NOT_FOUND
        members = [m.account_id for m in record.members]
        if account_id not in members:
            return ErrorCode.NOT_MEMBER
        facts = await self.store.privacy_facts(account_id, members, [frame.conv])
        if account_id in facts.typing_off:
            return None
        direct = frame.conv in facts.direct
        targets = [
            member
            for member in members
            if member == account_id
            or (
                member not in facts.typing_off
                and not (
                    direct
                    and (member in facts.blocking_viewer or member in facts.blocked_by_viewer)
                )
            )
        ]
        notice = TypingNotice(conv=frame.conv, account=account_id, on=frame.on)
        await self.bus.to_accounts(targets, Delivery(encode(notice)), skip=(account_id, device_id))
        return None

    # ------------------------------------------------------------------ receipts

    async def receipts(
        self, move: WatermarkMove, receipt: Receipt
    ) -> list[tuple[tuple[str, ...], Receipt]]:
        """Who hears about a watermark move, and what: the reader's own devices everything;
        each sender the delivered mark, and the read mark only when both have read
        receipts on; nothing for a sender the reader blocks in a direct conversation."""
        senders = [s for s in move.senders if s != move.account]
        if not senders:
            return [((move.account,), receipt)]
        facts = await self.store.privacy_facts(move.account, senders, [move.conv])
        full: list[str] = [move.account]
        masked: list[str] = []
        for sender in senders:
            if move.conv in facts.direct and sender in facts.blocked_by_viewer:
                continue
            if move.account in facts.receipts_off or sender in facts.receipts_off:
                masked.append(sender)
            else:
                full.append(sender)
        out = [(tuple(full), receipt)]
        if masked:
            out.append((tuple(masked), _hide_read(receipt)))
        return out

    async def mask(self, viewer: str, marks: Sequence[Watermark]) -> list[Watermark]:
        """Others' watermarks as ``viewer`` may see them (Welcome, REST receipts)."""
        others = {m.account for m in marks if m.account != viewer}
        if not others:
            return list(marks)
        facts = await self.store.privacy_facts(viewer, others, {m.conv for m in marks})
        shown: list[Watermark] = []
        for mark in marks:
            if mark.account == viewer:
                shown.append(mark)
            elif mark.conv in facts.direct and mark.account in facts.blocking_viewer:
                continue
            elif viewer in facts.receipts_off or mark.account in facts.receipts_off:
                shown.append(msgspec.structs.replace(mark, read=0, read_at=None))
            else:
                shown.append(mark)
        return shown

    # ------------------------------------------------------------------ blocking

    async def drop_blocked(
        self, sender: str, messages: list[tuple[str, tuple[str, int], bytes]]
    ) -> list[tuple[str, tuple[str, int], bytes]]:
        """A DeviceSend's messages without those to devices of accounts that block
        ``sender`` (dropped silently: the sender is not told)."""
        accounts = {address[0] for _, address, _ in messages}
        if accounts <= {sender}:
            return messages
        facts = await self.store.privacy_facts(sender, accounts)
        if not facts.blocking_viewer:
            return messages
        return [m for m in messages if m[1][0] not in facts.blocking_viewer]
