"""Send rate limits: token buckets per device and per account, in messages and in bytes.

One user must not be able to exhaust the server: every Send and DeviceSend takes a token from
its device's bucket, one from its account's (all its devices together) and its size from the
account's byte bucket. A request that finds one of them short is refused ``rate_limited``
without touching the store; the client keeps the message ``sending`` and sends it again after a
backoff (see :data:`tidings.protocol.errors.TRANSIENT_SEND_ERRORS`). The buckets are sized for
humans: a burst of a couple of hundred messages passes, a sustained flood does not.

Buckets live in memory (per server process); a full bucket is the same as no bucket, so idle
ones are forgotten and memory follows the number of devices sending right now.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

#: Buckets kept before full ones are swept out.
_SWEEP_AT = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class SendRates:
    """Sustained rates (per second) and bursts (bucket sizes)."""

    device_rate: float = 20.0
    device_burst: int = 200
    account_rate: float = 40.0
    account_burst: int = 400
    bytes_rate: float = 4 * 1024 * 1024
    bytes_burst: int = 32 * 1024 * 1024


class _Buckets:
    """Token buckets of one rate and size, by key. ``(tokens, time)`` per key."""

    __slots__ = ("_burst", "_levels", "_rate")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._levels: dict[object, tuple[float, float]] = {}

    def level(self, key: object, now: float) -> float:
        tokens, at = self._levels.get(key, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)

    def take(self, key: object, amount: float, now: float) -> None:
        self._levels[key] = (self.level(key, now) - amount, now)
        if len(self._levels) > _SWEEP_AT:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._levels = {
            key: value
            for key, value in self._levels.items()
            if value[0] + (now - value[1]) * self._rate < self._burst
        }


class SendLimiter:
    """Admits or refuses one device's Send/DeviceSend of ``size`` bytes."""

    def __init__(
        self, rates: SendRates | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = rates = rates or SendRates()
        self._clock = clock
        self._devices = _Buckets(rates.device_rate, rates.device_burst)
        self._accounts = _Buckets(rates.account_rate, rates.account_burst)
        # A single request may be as large as the whole burst (the setting is at least one
        # frame), so a request never waits for more than the bucket can hold.
        self._bytes = _Buckets(rates.bytes_rate, rates.bytes_burst)

    def admit(self, account_id: str, device_id: int, size: int) -> bool:
        """Take the tokens for one request, or ``False`` (taking nothing) if it is over a
        limit."""
        now = self._clock()
        device = (account_id, device_id)
        size = min(size, self.rates.bytes_burst)
        if (
            self._devices.level(device, now) < 1
            or self._accounts.level(account_id, now) < 1
            or self._bytes.level(account_id, now) < size
        ):
            return False
        self._devices.take(device, 1, now)
        self._accounts.take(account_id, 1, now)
        self._bytes.take(account_id, size, now)
        return True
