"""Send rate limits: token buckets per device and per account, in messages and in bytes.

One user must not be able to exhaust the server: every Send and DeviceSend takes a token from
its device's bucket, one from its account's (all its devices together) and its size from the
account's byte bucket. A request that finds one of them short is refused ``rate_limited``
without touching the store; the client keeps the message ``sending`` and sends it again after a
backoff (see :data:`tidings.protocol.errors.TRANSIENT_SEND_ERRORS`). The buckets are sized for
humans: a burst of a couple of hundred messages passes, a sustained flood does not.

**Hysteresis: a limited sender stays limited for a while.** Once one of a device's buckets (or
its account's) comes up short, that device (or the whole account) is *held*: every Send and
DeviceSend of it is refused, taking nothing, for :attr:`SendRates.hold` seconds (1 s), however
many tokens trickle back meanwhile. When the hold ends the bucket has refilled by at least
``min(burst, rate * hold)`` tokens (20 messages of a device at the defaults), so the sender gets a
useful run again instead of one message per refill. The point is order: a client pipelines its
Sends, so when message *k* is refused, its followers *k+1 …* are already on the wire and arrive
within a round trip. Without the hold a token refilled in between would let *k+1* be stored
before *k*'s resend, out of the order the user wrote them; with it every follower that arrives
within ``hold`` seconds of the refusal (far more than a round trip plus the server's queue) is
refused too, and the client (:class:`tidings.client.core.engine.Engine`) holds the rest of the
conversation back until *k* is accepted, then sends them again in the order written.

**Order gate: a refused message comes first.** The hold is a time window, and a follower can
arrive after it ended: a server that took longer than the hold to read the rest of a burst (a
busy machine, a slow store such as PostgreSQL answering a pipelined run one transaction at a
time), or a client that sent its held-back messages again before the refused one was stored.
Such a follower found tokens again and was stored before the refused message (seen on
PostgreSQL: refused 44 to 108, then 109 stored, 50 only later). So each connection also keeps
a :class:`SendOrder`: once a Send of a conversation is refused by the limiter, every later Send
of that conversation on that connection is refused ``rate_limited`` too, taking nothing and
whenever it arrives, until the refused message itself is admitted; from then on the
conversation's Sends are stored in arrival order behind it. The gate belongs to the
connection: a client that connects again sends its whole outbox again in the order written.

Buckets live in memory (per server process), one object per device and one per account holding
all of its buckets and its hold, so a Send looks up two keys. A full bucket is the same as no
bucket, so idle ones (whose hold has ended) are forgotten and memory follows the number of
devices sending right now.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable

#: Devices (accounts) kept before those with full buckets and no hold are swept out.
_SWEEP_AT = 4096
#: Seconds an order gate lasts after its refused message was last seen: a client sends that
#: message again at least every minute (its retry backoff is capped there) until it is stored,
#: so a gate older than this is one whose message the client gave up on.
GATE_TTL = 150.0
#: Conversations one connection may have gated at once; beyond that (a client sending to
#: many conversations in one burst) the hold alone keeps the order, as it did before.
MAX_GATES = 64


@dataclasses.dataclass(frozen=True, slots=True)
class SendRates:
    """Sustained rates (per second) and bursts (bucket sizes)."""

    device_rate: float = 20.0
    device_burst: int = 200
    account_rate: float = 40.0
    account_burst: int = 400
    bytes_rate: float = 4 * 1024 * 1024
    bytes_burst: int = 32 * 1024 * 1024
    #: seconds a device (account) is refused after one of its buckets came up short: longer
    #: than a round trip, so that the pipelined followers of a refused Send are refused too
    hold: float = 1.0


class _Bucket:
    """The token buckets of one device (messages) or one account (messages and bytes), and
    the end of its hold: what one Send looks up once per key."""

    __slots__ = ("at", "bytes", "held_until", "tokens")

    def __init__(self, tokens: float, nbytes: float, now: float) -> None:
        #: messages and bytes left at ``at``
        self.tokens = tokens
        self.bytes = nbytes
        self.at = now
        #: end of the hold after a refusal (see the module docstring)
        self.held_until = 0.0


class SendLimiter:
    """Admits or refuses one device's Send/DeviceSend of ``size`` bytes."""

    def __init__(
        self, rates: SendRates | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = rates = rates or SendRates()
        self._clock = clock
        # A single request may be as large as the whole burst (the setting is at least one
        # frame), so a request never waits for more than the bucket can hold.
        #: ``(account, device)`` → its device bucket (messages)
        self._devices: dict[tuple[str, int], _Bucket] = {}
        #: account → its account buckets (messages and bytes)
        self._accounts: dict[str, _Bucket] = {}
        #: no sweep before this time (at most one a second, however many senders are new)
        self._next_sweep = 0.0

    def admit(self, account_id: str, device_id: int, size: int) -> bool:
        """Take the tokens for one request, or ``False`` (taking nothing) if it is over a
        limit or its device or account is still held after an earlier refusal."""
        now = self._clock()
        rates = self.rates
        size = min(size, rates.bytes_burst)
        key = (account_id, device_id)
        device = self._devices.get(key)
        if device is None:
            if len(self._devices) >= _SWEEP_AT and now >= self._next_sweep:
                self._sweep(now)
            device = self._devices[key] = _Bucket(rates.device_burst, 0, now)
        account = self._accounts.get(account_id)
        if account is None:
            if len(self._accounts) >= _SWEEP_AT and now >= self._next_sweep:
                self._sweep(now)
            account = self._accounts[account_id] = _Bucket(
                rates.account_burst, rates.bytes_burst, now
            )
        if device.held_until > now or account.held_until > now:
            return False
        # Refill since the last look (the byte bucket shares the account's clock).
        elapsed = now - device.at
        if elapsed:
            device.tokens = min(rates.device_burst, device.tokens + elapsed * rates.device_rate)
            device.at = now
        elapsed = now - account.at
        if elapsed:
            account.tokens = min(rates.account_burst, account.tokens + elapsed * rates.account_rate)
            account.bytes = min(rates.bytes_burst, account.bytes + elapsed * rates.bytes_rate)
            account.at = now
        device_short = device.tokens < 1
        account_short = account.tokens < 1 or account.bytes < size
        if device_short or account_short:
            if device_short:
                device.held_until = now + rates.hold
            if account_short:
                account.held_until = now + rates.hold
            return False
        device.tokens -= 1
        account.tokens -= 1
        account.bytes -= size
        return True

    def _sweep(self, now: float) -> None:
        """Forget the buckets that would be full by now and are not held: the same as none."""
        rates = self.rates
        self._next_sweep = now + 1.0
        self._devices = {
            key: b
            for key, b in self._devices.items()
            if b.held_until > now
            or b.tokens + (now - b.at) * rates.device_rate < rates.device_burst
        }
        self._accounts = {
            key: b
            for key, b in self._accounts.items()
            if b.held_until > now
            or b.tokens + (now - b.at) * rates.account_rate < rates.account_burst
            or b.bytes + (now - b.at) * rates.bytes_rate < rates.bytes_burst
        }


class SendOrder:
    """The order gates of one connection (module docstring): per conversation, the message
    that was refused and must be stored before any other Send of that conversation."""

    __slots__ = ("_clock", "_gates")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: conversation → (the refused message, when it was last refused)
        self._gates: dict[str, tuple[uuid.UUID, float]] | None = None

    def waits(self, conv: str, message_id: uuid.UUID) -> bool:
        """Whether a Send of ``message_id`` to ``conv`` must be refused without asking the
        limiter: an earlier message of the conversation was refused and is not stored yet."""
        gates = self._gates
        if not gates:
            return False
        gate = gates.get(conv)
        if gate is None or gate[0] == message_id:
            return False
        if self._clock() - gate[1] > GATE_TTL:
            del gates[conv]
            return False
        return True

    def refused(self, conv: str, message_id: uuid.UUID) -> None:
        """The limiter refused ``message_id``: the conversation waits for it (or, if it is the
        message already waited for, the gate lasts on)."""
        gates = self._gates
        if gates is None:
            gates = self._gates = {}
        gate = gates.get(conv)
        if gate is not None and gate[0] != message_id:
            return
        if gate is None and len(gates) >= MAX_GATES:
            return
        gates[conv] = (message_id, self._clock())

    def passed(self, conv: str, message_id: uuid.UUID) -> None:
        """``message_id`` went on to the store (or was refused for good): whatever follows it
        in the conversation may go too."""
        gates = self._gates
        if gates:
            gate = gates.get(conv)
            if gate is not None and gate[0] == message_id:
                del gates[conv]
