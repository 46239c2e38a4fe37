"""The pure push decision: every cell of levels x mentioned x muted x conversation kind x own,
for each event kind, then coalescing and the silent-push rate."""

from __future__ import annotations

import itertools

import pytest

from tidings.server.push.decide import (
    ConversationKind,
    DevicePushState,
    EventKind,
    NotifyLevel,
    PushEvent,
    decide,
)
from tidings.server.push.provider import Priority, Wake, WakeKind

NOW = 1_000_000.0
A, S = WakeKind.ALERT, WakeKind.SILENT
PRIORITY = {A: Priority.HIGH, S: Priority.NORMAL}
FRESH = DevicePushState()  # never pushed, never connected

# A message, to a device with no push history: conversation kind, level, mentioned, muted,
# from the recipient's own account -> the wake kind. Every one of the 48 cells.
# fmt: off
MESSAGE_TABLE = [
    # conv     level        mention muted  own    wake
    ("direct" , "all"      , False, False, False, A),
    ("direct" , "all"      , False, False, True , S),
    ("direct" , "all"      , False, True , False, S),
    ("direct" , "all"      , False, True , True , S),
    ("direct" , "all"      , True , False, False, A),
    ("direct" , "all"      , True , False, True , S),
    ("direct" , "all"      , True , True , False, S),
    ("direct" , "all"      , True , True , True , S),
    ("direct" , "mentions" , False, False, False, A),
    ("direct" , "mentions" , False, False, True , S),
    ("direct" , "mentions" , False, True , False, S),
    ("direct" , "mentions" , False, True , True , S),
    ("direct" , "mentions" , True , False, False, A),
    ("direct" , "mentions" , True , False, True , S),
    ("direct" , "mentions" , True , True , False, S),
    ("direct" , "mentions" , True , True , True , S),
    ("direct" , "none"     , False, False, False, S),
    ("direct" , "none"     , False, False, True , S),
    ("direct" , "none"     , False, True , False, S),
    ("direct" , "none"     , False, True , True , S),
    ("direct" , "none"     , True , False, False, S),
    ("direct" , "none"     , True , False, True , S),
    ("direct" , "none"     , True , True , False, S),
    ("direct" , "none"     , True , True , True , S),
    ("group"  , "all"      , False, False, False, A),
    ("group"  , "all"      , False, False, True , S),
    ("group"  , "all"      , False, True , False, S),
    ("group"  , "all"      , False, True , True , S),
    ("group"  , "all"      , True , False, False, A),
    ("group"  , "all"      , True , False, True , S),
    ("group"  , "all"      , True , True , False, S),
    ("group"  , "all"      , True , True , True , S),
    ("group"  , "mentions" , False, False, False, S),
    ("group"  , "mentions" , False, False, True , S),
    ("group"  , "mentions" , False, True , False, S),
    ("group"  , "mentions" , False, True , True , S),
    ("group"  , "mentions" , True , False, False, A),
    ("group"  , "mentions" , True , False, True , S),
    ("group"  , "mentions" , True , True , False, S),
    ("group"  , "mentions" , True , True , True , S),
    ("group"  , "none"     , False, False, False, S),
    ("group"  , "none"     , False, False, True , S),
    ("group"  , "none"     , False, True , False, S),
    ("group"  , "none"     , False, True , True , S),
    ("group"  , "none"     , True , False, False, S),
    ("group"  , "none"     , True , False, True , S),
    ("group"  , "none"     , True , True , False, S),
    ("group"  , "none"     , True , True , True , S),
]
# fmt: on


def event(
    kind: EventKind, conv: str, level: str, mentioned: bool, muted: bool, own: bool
) -> PushEvent:
    return PushEvent(
        kind=kind,
        conversation=ConversationKind(conv),
        level=NotifyLevel(level),
        muted_until=NOW + 3600 if muted else None,
        mentioned=mentioned,
        from_self=own,
        conversation_hint="hint-9",
        counter=4,
    )


def test_the_table_has_every_cell() -> None:
    cells = {row[:5] for row in MESSAGE_TABLE}
    assert len(cells) == len(MESSAGE_TABLE) == 2 * 3 * 2 * 2 * 2


@pytest.mark.parametrize(("conv", "level", "mentioned", "muted", "own", "expected"), MESSAGE_TABLE)
def test_message(
    conv: str, level: str, mentioned: bool, muted: bool, own: bool, expected: WakeKind
) -> None:
    wake = decide(event(EventKind.MESSAGE, conv, level, mentioned, muted, own), FRESH, now=NOW)
    assert wake == Wake(expected, PRIORITY[expected], "hint-9", 4)


# Receipts, reactions and membership changes wake silently in every cell.
OTHER_TABLE = [
    (kind, *cell)
    for kind in (EventKind.RECEIPT, EventKind.REACTION, EventKind.MEMBERSHIP)
    for cell in itertools.product(
        ("direct", "group"),
        ("all", "mentions", "none"),
        (False, True),
        (False, True),
        (False, True),
    )
]


@pytest.mark.parametrize(("kind", "conv", "level", "mentioned", "muted", "own"), OTHER_TABLE)
def test_non_message_events_are_silent(
    kind: EventKind, conv: str, level: str, mentioned: bool, muted: bool, own: bool
) -> None:
    wake = decide(event(kind, conv, level, mentioned, muted, own), FRESH, now=NOW)
    assert wake == Wake(S, Priority.NORMAL, "hint-9", 4)


def test_a_mute_that_has_ended_no_longer_silences() -> None:
    ended = PushEvent(EventKind.MESSAGE, ConversationKind.DIRECT, muted_until=NOW)
    assert decide(ended, FRESH, now=NOW) == Wake(A, Priority.HIGH)
    running = PushEvent(EventKind.MESSAGE, ConversationKind.DIRECT, muted_until=NOW + 0.001)
    assert decide(running, FRESH, now=NOW) == Wake(S, Priority.NORMAL)


DIRECT = PushEvent(EventKind.MESSAGE, ConversationKind.DIRECT)  # wants an alert
RECEIPT = PushEvent(EventKind.RECEIPT, ConversationKind.DIRECT)  # wants a silent push


def pushed(ago: float, kind: WakeKind, connected_ago: float | None = None) -> DevicePushState:
    return DevicePushState(
        last_push_at=NOW - ago,
        last_push_kind=kind,
        last_connect_at=None if connected_ago is None else NOW - connected_ago,
        last_silent_at=NOW - ago if kind is S else None,
    )


# device state, event -> the wake kind sent, or None
COALESCING_TABLE = [
    # an alert 5 s ago, not connected since: later events send nothing
    (pushed(5, A), DIRECT, None),
    (pushed(5, A), RECEIPT, None),
    # a silent push 5 s ago: a louder alert still goes out, another silent one does not
    (pushed(5, S), DIRECT, A),
    (pushed(5, S), RECEIPT, None),
    # the window (10 s) has passed
    (pushed(10, A), DIRECT, A),
    (pushed(10, A), RECEIPT, S),
    # the device connected after the push: the earlier push is used up
    (pushed(5, A, connected_ago=3), DIRECT, A),
    (pushed(5, A, connected_ago=3), RECEIPT, S),
    # it connected only before the push: still coalesced
    (pushed(5, A, connected_ago=8), DIRECT, None),
    # an unknown earlier kind counts as the loudest
    (DevicePushState(last_push_at=NOW - 5), DIRECT, None),
    # at most one silent push a minute, even after the device connected
    (pushed(30, S, connected_ago=20), RECEIPT, None),
    (pushed(59.9, S, connected_ago=20), RECEIPT, None),
    (pushed(60, S, connected_ago=20), RECEIPT, S),
    # the silent rate never holds back an alert
    (pushed(30, S, connected_ago=20), DIRECT, A),
    (DevicePushState(last_silent_at=NOW - 1), DIRECT, A),
]


@pytest.mark.parametrize(("state", "ev", "expected"), COALESCING_TABLE)
def test_coalescing_and_silent_rate(
    state: DevicePushState, ev: PushEvent, expected: WakeKind | None
) -> None:
    wake = decide(ev, state, now=NOW)
    assert (wake.kind if wake else None) is expected


def test_windows_are_parameters() -> None:
    assert decide(DIRECT, pushed(5, A), now=NOW, coalesce_seconds=5) == Wake(A, Priority.HIGH)
    assert decide(DIRECT, pushed(5, A), now=NOW, coalesce_seconds=30) is None
    state = pushed(30, S, connected_ago=20)
    assert decide(RECEIPT, state, now=NOW, silent_interval=30) == Wake(S, Priority.NORMAL)


def test_decide_is_pure() -> None:
    state = pushed(5, S)
    assert decide(DIRECT, state, now=NOW) == decide(DIRECT, state, now=NOW)
    assert state == pushed(5, S)
