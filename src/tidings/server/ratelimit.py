"""Token buckets keyed by who is asking (an account, an IP address)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

#: Buckets kept before full ones are forgotten (a full bucket is the same as no bucket).
_MAX_BUCKETS = 100_000


class RateLimiter:
    """``per_minute`` tokens per key, refilled continuously; a bucket holds at most
    ``per_minute`` tokens. Single-threaded: it runs on the event loop."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        #: key -> (tokens, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self._rate)

    def available(self, key: str) -> float:
        """Tokens in ``key``'s bucket now (negative while in debt); takes nothing."""
        return self._tokens(key, self._clock())

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if the bucket has them (a cost above the capacity is allowed
        from a full bucket, which then runs into debt); ``False`` takes nothing."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < min(cost, self.capacity):
            return False
        self._store(key, tokens - cost, now)
        return True

    def charge(self, key: str, cost: float) -> None:
        """Take ``cost`` more tokens unconditionally (the bucket may go into debt)."""
        if cost <= 0:
            return
        now = self._clock()
        self._store(key, self._tokens(key, now) - cost, now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
            full = [k for k in self._buckets if self._tokens(k, now) >= self.capacity]
            for k in full:
                del self._buckets[k]
        self._buckets[key] = (tokens, now)


def client_key(host: str) -> str:
    """The key per-IP limits count a client on: its IPv4 address, or the /64 network of its
    IPv6 address (one customer usually holds a whole /64 and can pick any address in it); an
    IPv4-mapped IPv6 address counts as the IPv4 one. Anything else is its own key."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
