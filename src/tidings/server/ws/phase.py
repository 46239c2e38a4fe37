"""The phases of a device connection and the transitions between them.

::

    NEW ──run()──▶ AWAITING_HELLO ──Hello──▶ SYNCING ──replay done──▶ LIVE
                         │                      │                       │
                         └──────────────────────┴────── close() ────────┴──▶ CLOSING
    (any phase but NEW) ──run() returns──▶ CLOSED

- AWAITING_HELLO: attached to the bus; only Ping and Hello are served, live frames are held.
- SYNCING: Hello accepted; Welcome and the pending queue go out, live frames are still held
  (then sent minus what the replay carried). Requests are served.
- LIVE: Synced went out; live frames go straight to the outbox.
- CLOSING: a close frame is queued; frames from the peer are ignored, nothing more is queued.
- CLOSED: ``run()`` returned.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    NEW = "new"
    AWAITING_HELLO = "awaiting_hello"
    SYNCING = "syncing"
    LIVE = "live"
    CLOSING = "closing"
    CLOSED = "closed"


#: The phases each phase may move to; anything else is a :class:`PhaseError`.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.AWAITING_HELLO}),
    Phase.AWAITING_HELLO: frozenset({Phase.SYNCING, Phase.CLOSING, Phase.CLOSED}),
    Phase.SYNCING: frozenset({Phase.LIVE, Phase.CLOSING, Phase.CLOSED}),
    Phase.LIVE: frozenset({Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}

#: Phases in which the connection still serves frames and queues output.
OPEN: frozenset[Phase] = frozenset({Phase.AWAITING_HELLO, Phase.SYNCING, Phase.LIVE})
#: Phases after an accepted Hello.
GREETED: frozenset[Phase] = frozenset({Phase.SYNCING, Phase.LIVE})


class PhaseError(Exception):
    """A transition :data:`TRANSITIONS` does not list. Raised by a frame handler, it is the
    peer's protocol error (answered ``bad_frame``); the connection stays where it was."""

    def __init__(self, current: Phase, to: Phase) -> None:
        super().__init__(f"cannot go from {current.value} to {to.value}")
        self.current = current
        self.to = to


def check_transition(current: Phase, to: Phase) -> None:
    """Raise :class:`PhaseError` unless ``current`` may move to ``to``."""
    if to not in TRANSITIONS[current]:
        raise PhaseError(current, to)
