"""The embedded default provider: logs that a push would be sent, and reports it delivered.

Guarantees: the log line names the device (a token fingerprint and the registration's opaque
device id), the wake kind and its priority, nothing else: no hint, no counter, never content.
It does no I/O besides logging and never fails.
"""

from __future__ import annotations

import logging

from tidings.server.push.provider import (
    Platform,
    PushRegistration,
    PushResult,
    Wake,
    token_fingerprint,
)

log = logging.getLogger(__name__)


class LogProvider:
    """Stands in for a push service on servers that have none configured."""

    platform = Platform.LOG

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        self._log.info(
            "push (%s) to device %s [%s]: %s, priority %s",
            registration.platform.value,
            registration.device_id or "-",
            token_fingerprint(registration.token),
            wake.kind.value,
            wake.priority.value,
        )
        return PushResult.delivered()

    async def aclose(self) -> None:
        return None
