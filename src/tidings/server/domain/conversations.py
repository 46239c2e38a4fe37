"""Rules about conversations, their members and their watermarks: who may change a group, how
big it may get, and how a receipt moves the marks.

Pure functions of records a store has fetched; a refusal raises :class:`Refused` before the
store writes anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tidings.protocol import ErrorCode
from tidings.server.domain.records import ConversationRecord, Refused


def direct_key(first: str, second: str) -> str:
    """What makes a direct conversation unique: its two accounts, in either order."""
    return "|".join(sorted((first, second)))


def check_cap(count: int, cap: int) -> None:
    """Refuse a group of ``count`` accounts when ``cap`` is the most it may have."""
    if count > cap:
        raise Refused(ErrorCode.GROUP_FULL, f"a group has at most {cap} members")


def new_group_members(actor: str, members: Sequence[str], cap: int) -> list[str]:
    """The members of a new group besides its creator ``actor`` (duplicates dropped, order
    kept). Raises GROUP_FULL if that makes more than ``cap`` accounts."""
    others = [m for m in dict.fromkeys(members) if m != actor]
    check_cap(len(others) + 1, cap)
    return others


def require_member(exists: bool, is_member: bool) -> None:
    """Refuse unless the account is a member: NOT_MEMBER for an existing conversation,
    NOT_FOUND otherwise."""
    if is_member:
        return
    if not exists:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    raise Refused(ErrorCode.NOT_MEMBER, "not a member of this conversation")


def group_for(record: ConversationRecord | None, actor: str, *, admin: bool) -> ConversationRecord:
    """The group ``actor`` acts on, after checking it exists, is a group, and ``actor`` is a
    member (and an admin, if ``admin``)."""
    if record is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such conversation")
    if record.kind != "group":
        raise Refused(ErrorCode.NOT_A_GROUP, "not a group")
    me = record.member(actor)
    if me is None:
        raise Refused(ErrorCode.NOT_MEMBER, "not a member of this group")
    if admin and me.role != "admin":
        raise Refused(ErrorCode.FORBIDDEN, "only admins can do this")
    return record


def check_additions(record: ConversationRecord, adding: Sequence[str], cap: int) -> None:
    """Refuse adding ``adding`` to the group: ALREADY_MEMBER if one of them is, GROUP_FULL if
    the group would outgrow ``cap``."""
    current = {m.account_id for m in record.members}
    if any(a in current for a in adding):
        raise Refused(ErrorCode.ALREADY_MEMBER, "already a member")
    check_cap(len(current) + len(adding), cap)


def check_removal(record: ConversationRecord, account: str) -> None:
    """Refuse removing an account that is not a member (NOT_FOUND)."""
    if record.member(account) is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such member")


def member_ids(record: ConversationRecord) -> tuple[str, ...]:
    return tuple(m.account_id for m in record.members)


def initial_marks(joined_seq: int) -> int:
    """A member's first delivered and read marks: it has nothing to receive or read from
    before it joined."""
    return joined_seq - 1


@dataclasses.dataclass(frozen=True, slots=True)
class MarksMove:
    """New watermarks, and the seq range ``(low, high]`` whose senders should hear of it."""

    delivered: int
    read: int
    low: int
    high: int


def raise_marks(
    old_delivered: int, old_read: int, head: int, *, delivered: int, read: int
) -> MarksMove | None:
    """Raise a member's marks to at least the given values, capped at the conversation's
    ``head``, with delivered never below read. ``None`` if nothing moved."""
    new_read = max(old_read, min(read, head))
    new_delivered = max(old_delivered, min(delivered, head), new_read)
    if new_delivered == old_delivered and new_read == old_read:
        return None
    # Whoever has messages between the old and the new marks hears about it.
    low = old_read if new_read != old_read else old_delivered
    high = new_delivered if new_delivered != old_delivered else new_read
    return MarksMove(new_delivered, new_read, low, high)
