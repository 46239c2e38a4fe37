"""What the delivery service calls after something durable happened, for push wake-ups
(implemented by :class:`~tidings.server.push.service.PushService`). Every call returns at once
and never raises for push trouble."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tidings.protocol import Envelope
from tidings.server.domain.records import MembershipChange, WatermarkMove


class PushHook(Protocol):
    def message(
        self,
        envelope: Envelope,
        recipients: Sequence[str],
        sender: tuple[str, int],
        *,
        quiet: bool = False,
    ) -> None: ...

    def receipt(self, move: WatermarkMove, device: tuple[str, int]) -> None: ...

    def membership(self, change: MembershipChange) -> None: ...
