"""What every push provider promises, and the types they share.

Guarantees, first:

* A :class:`Wake` carries only an opaque conversation hint, a counter and how loud to be. It has
  no field for plaintext, sender names, titles or anything else a push service could read, so
  no provider can put them into a payload.
* :meth:`PushProvider.send` never raises for anything the push service or the network does:
  every such outcome is mapped to a :class:`PushResult`. Only programming errors escape.
* Tokens are secrets of a kind (they address a device): :func:`token_fingerprint` is what logs
  show, never the token itself.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from typing import Protocol, runtime_checkable


class Platform(enum.StrEnum):
    """Which push service a registration belongs to."""

    APNS = "apns"
    FCM = "fcm"
    WEBPUSH = "webpush"
    LOG = "log"


class WakeKind(enum.StrEnum):
    #: shows a generic notification ("New message") that the app replaces after decrypting
    ALERT = "alert"
    #: wakes the app in the background to sync; shows nothing
    SILENT = "silent"


class Priority(enum.StrEnum):
    HIGH = "high"
    NORMAL = "normal"


#: how much louder one wake is than another (for coalescing decisions)
LOUDNESS = {WakeKind.SILENT: 0, WakeKind.ALERT: 1}


@dataclasses.dataclass(frozen=True, slots=True)
class PushRegistration:
    """One device's registration with one push service.

    ``token`` is the APNs device token or FCM registration token; for ``webpush`` it is the
    subscription's endpoint URL, and ``p256dh``/``auth`` are the subscription's keys (base64url,
    as the browser or UnifiedPush distributor hands them out). ``topic`` is the APNs bundle id
    (``apns-topic``); empty means the provider's configured default. ``device_id`` is an opaque
    reference the server uses to find the registration again (for example to delete it when
    the provider says it is invalid); it is never sent anywhere.
    """

    platform: Platform
    token: str
    device_id: str = ""
    p256dh: str = ""
    auth: str = ""
    topic: str = ""

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("a push registration needs a token or endpoint")
        if self.platform is Platform.WEBPUSH and not (self.p256dh and self.auth):
            raise ValueError("a webpush registration needs the subscription's p256dh and auth")

    def __repr__(self) -> str:  # keeps tokens and keys out of logs and tracebacks
        return (
            f"PushRegistration(platform={self.platform.value!r}, "
            f"token={token_fingerprint(self.token)!r}, device_id={self.device_id!r})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Wake:
    """What to send: how loud, and an opaque hint. Never content.

    ``conversation_hint`` is an opaque identifier the app maps back to a conversation (it is
    also used as the collapse key, so later wakes for the same conversation replace earlier
    ones). ``counter`` is a small number such as the count of pending envelopes.
    """

    kind: WakeKind
    priority: Priority
    conversation_hint: str = ""
    counter: int = 0

    def __post_init__(self) -> None:
        if len(self.conversation_hint) > 64:
            raise ValueError("the conversation hint is at most 64 characters (APNs collapse id)")
        if not 0 <= self.counter < 2**31:
            raise ValueError("the counter must be between 0 and 2**31 - 1")


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    #: the token or subscription is invalid for good: delete the registration
    DROP_REGISTRATION = "drop_registration"
    #: a transient failure (throttling, outage, network): try again later
    RETRY = "retry"
    #: this push can never succeed as sent (bad request, auth misconfigured): do not retry
    FAILED_PERMANENTLY = "failed_permanently"


@dataclasses.dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of one send. Build it with the class methods."""

    outcome: Outcome
    #: for ``RETRY``: seconds the service asked us to wait (Retry-After), or None if it did not
    retry_after: float | None = None
    #: the service's reason (APNs ``reason``, FCM ``errorCode``, HTTP status), for logs
    reason: str = ""

    @classmethod
    def delivered(cls) -> PushResult:
        return cls(Outcome.DELIVERED)

    @classmethod
    def drop_registration(cls, reason: str) -> PushResult:
        return cls(Outcome.DROP_REGISTRATION, reason=reason)

    @classmethod
    def retry(cls, reason: str, after: float | None = None) -> PushResult:
        return cls(Outcome.RETRY, retry_after=after, reason=reason)

    @classmethod
    def failed_permanently(cls, reason: str) -> PushResult:
        return cls(Outcome.FAILED_PERMANENTLY, reason=reason)


@runtime_checkable
class PushProvider(Protocol):
    """One push service. Implementations are safe to call from many tasks at once."""

    platform: Platform

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        """Send ``wake`` to ``registration``; map every service or network outcome to a
        result instead of raising."""
        ...

    async def aclose(self) -> None:
        """Release connections. The provider is not used afterwards."""
        ...


def token_fingerprint(token: str) -> str:
    """A short, stable, non-reversible name for a token or endpoint, for logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given as delta-seconds; None if absent or an
    HTTP date (the caller then uses its own backoff)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
