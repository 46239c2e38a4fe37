"""Whether, and how loudly, to wake one device for one event: a pure function.

Guarantees, first: :func:`decide` does no I/O and reads no clock (``now`` is passed in), so
the same inputs always give the same answer; it returns a :class:`Wake` that carries only the
opaque hint and counter it was given, never content.

The rules:

* **Alert** (priority high): a message in a direct conversation, or in a group whose level is
  ``all``, or ``mentions`` when the recipient is mentioned; never when the conversation is
  muted (``muted_until`` in the future) or at ``none``, and never for the recipient's own
  messages (sent from another of their devices).
* **Silent** (priority normal), for everything else that changes what the app shows:
  receipts, reactions, membership changes, messages that do not alert (muted, ``none``, a
  group at ``mentions`` without a mention) and the recipient's own events, so their other
  devices sync.
* **Coalescing**: while the device has not connected since its last push and that push is
  less than ``coalesce_seconds`` old, nothing is sent unless the new wake is louder than the
  one already sent (a silent push does not hide a later alert).
* **Silent rate**: at most one silent push per device per ``silent_interval`` seconds.
"""

from __future__ import annotations

import dataclasses
import enum

from tidings.server.push.provider import LOUDNESS, Priority, Wake, WakeKind

DEFAULT_COALESCE_SECONDS = 10.0
DEFAULT_SILENT_INTERVAL = 60.0


class EventKind(enum.StrEnum):
    MESSAGE = "message"
    RECEIPT = "receipt"
    REACTION = "reaction"
    MEMBERSHIP = "membership"


class ConversationKind(enum.StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class NotifyLevel(enum.StrEnum):
    ALL = "all"
    MENTIONS = "mentions"
    NONE = "none"


@dataclasses.dataclass(frozen=True, slots=True)
class PushEvent:
    """One event as one recipient sees it. Times are seconds on the caller's clock."""

    kind: EventKind
    conversation: ConversationKind
    level: NotifyLevel = NotifyLevel.ALL
    #: the conversation is muted while ``now < muted_until``; None = not muted
    muted_until: float | None = None
    #: the recipient is mentioned in the message
    mentioned: bool = False
    #: the sender is the recipient's own account (another of their devices)
    from_self: bool = False
    #: opaque conversation hint and counter copied into the wake
    conversation_hint: str = ""
    counter: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DevicePushState:
    """What the server remembers about one device's pushes and connections."""

    last_push_at: float | None = None
    last_push_kind: WakeKind | None = None
    last_connect_at: float | None = None
    last_silent_at: float | None = None


def wanted_kind(event: PushEvent, now: float) -> WakeKind:
    """The loudness the event deserves on its own, before coalescing and rate limits."""
    if event.kind is not EventKind.MESSAGE or event.from_self:
        return WakeKind.SILENT
    muted = event.muted_until is not None and now < event.muted_until
    if muted or event.level is NotifyLevel.NONE:
        return WakeKind.SILENT
    if event.conversation is ConversationKind.DIRECT:
        return WakeKind.ALERT
    if event.level is NotifyLevel.ALL or event.mentioned:
        return WakeKind.ALERT
    return WakeKind.SILENT


def _coalesced(state: DevicePushState, kind: WakeKind, now: float, window: float) -> bool:
    """True if a push the device has not yet connected for already covers ``kind``."""
    if state.last_push_at is None:
        return False
    connected_since = (
        state.last_connect_at is not None and state.last_connect_at >= state.last_push_at
    )
    if connected_since or now - state.last_push_at >= window:
        return False
    sent = state.last_push_kind or WakeKind.ALERT  # unknown kind: assume the loudest
    return LOUDNESS[kind] <= LOUDNESS[sent]


def decide(
    event: PushEvent,
    state: DevicePushState,
    *,
    now: float,
    coalesce_seconds: float = DEFAULT_COALESCE_SECONDS,
    silent_interval: float = DEFAULT_SILENT_INTERVAL,
) -> Wake | None:
    """The wake to send to one offline device for ``event``, or None to send nothing."""
    kind = wanted_kind(event, now)
    if _coalesced(state, kind, now, coalesce_seconds):
        return None
    if kind is WakeKind.SILENT:
        if state.last_silent_at is not None and now - state.last_silent_at < silent_interval:
            return None
        priority = Priority.NORMAL
    else:
        priority = Priority.HIGH
    return Wake(kind, priority, event.conversation_hint, event.counter)
