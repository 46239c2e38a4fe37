"""The frame handler map and the phase transition table of a device connection."""

from __future__ import annotations

import typing

import pytest

from tidings.protocol import ClientFrame
from tidings.server.ws.connection import DeviceConnection
from tidings.server.ws.handlers import HANDLERS
from tidings.server.ws.phase import OPEN, TRANSITIONS, Phase, PhaseError, check_transition


def test_every_client_frame_type_has_a_handler():
    frame_types = set(typing.get_args(ClientFrame))
    assert frame_types - set(HANDLERS) == set(), "client frames without a handler"
    assert set(HANDLERS) - frame_types == set(), "handlers of frames clients cannot send"


def test_frames_are_served_only_in_open_phases():
    for frame_type, handler in HANDLERS.items():
        assert handler.phases, frame_type
        assert handler.phases <= OPEN, frame_type


def test_transition_table_covers_every_phase_and_closed_is_final():
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CLOSED] == frozenset()
    for phase in OPEN:
        assert Phase.CLOSING in TRANSITIONS[phase]
        assert Phase.CLOSED in TRANSITIONS[phase]


@pytest.mark.parametrize("current", list(Phase), ids=lambda p: p.value)
@pytest.mark.parametrize("to", list(Phase), ids=lambda p: p.value)
def test_check_transition_allows_exactly_the_table(current, to):
    if to in TRANSITIONS[current]:
        check_transition(current, to)
    else:
        with pytest.raises(PhaseError):
            check_transition(current, to)


class _NoSocket:
    async def receive_frame(self) -> None:
        return None

    async def send_frame(self, data: bytes) -> None:
        raise AssertionError("nothing is sent")

    async def close(self, code: int, reason: str) -> None:
        raise AssertionError("nothing is closed")


def test_advance_refuses_an_unlisted_transition_and_stays_put():
    connection = DeviceConnection(
        _NoSocket(),
        device=None,  # type: ignore[arg-type]
        service=None,  # type: ignore[arg-type]
        bus=None,  # type: ignore[arg-type]
        idle_timeout=30,
        queue_frames=8,
    )
    assert connection.phase is Phase.NEW
    with pytest.raises(PhaseError, match="cannot go from new to live"):
        connection._advance(Phase.LIVE)
    assert connection.phase is Phase.NEW
    connection._advance(Phase.AWAITING_HELLO)
    connection._advance(Phase.SYNCING)
    with pytest.raises(PhaseError):
        connection._advance(Phase.SYNCING)
    assert connection.phase is Phase.SYNCING
