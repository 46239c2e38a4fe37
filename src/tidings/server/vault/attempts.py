"""Backoff of failed recovery proofs, per account and per client address.

The first :attr:`Backoff.free` failures cost nothing; after that each failure blocks the next
proof for ``base * 2^(failures - free)`` seconds, capped at ``cap``. A success resets the count,
and so does a quiet period of ``forget`` seconds without failures, so an account under attack
is slowed for everybody but never locked for its owner: at worst the owner waits ``cap``
between two tries, and the count decays once the attack stops. The per-account count is kept
in the database (it survives restarts and is shared by every node); the per-address one lives
in this process, as do counts for usernames that have no vault (so they answer alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    free: int = 5
    base: float = 1.0
    cap: float = 900.0
    forget: float = 86_400.0
    #: key → (failures, blocked until ms, last failure ms)
    _state: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def delay_ms(self, failures: int) -> int:
        """How long a proof is blocked after the ``failures``-th failure."""
        if failures < self.free:
            return 0
        return int(min(self.cap, self.base * 2 ** (failures - self.free)) * 1000)

    def current(self, failures: int, last_failure: int, now: int) -> int:
        """``failures`` as they count at ``now`` (0 after a quiet ``forget`` period)."""
        return 0 if now - last_failure > self.forget * 1000 else failures

    def blocked(self, key: str, now: int) -> int:
        """ms left before ``key`` may try again (0: now)."""
        failures, until, last = self._state.get(key, (0, 0, 0))
        if self.current(failures, last, now) == 0:
            self._state.pop(key, None)
            return 0
        return max(0, until - now)

    def fail(self, key: str, now: int) -> int:
        failures, _until, last = self._state.get(key, (0, 0, 0))
        failures = self.current(failures, last, now) + 1
        self._state[key] = (failures, now + self.delay_ms(failures), now)
        if len(self._state) > 100_000:  # bounded memory: drop the oldest entries
            for old in sorted(self._state, key=lambda k: self._state[k][2])[:10_000]:
                del self._state[old]
        return failures

    def succeed(self, key: str) -> None:
        self._state.pop(key, None)
