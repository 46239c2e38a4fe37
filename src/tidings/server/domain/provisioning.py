"""Rules of device linking: when a provisioning request may be approved, and when its result
may be fetched."""

from __future__ import annotations

import hmac

from tidings.protocol import ErrorCode
from tidings.server.domain.records import Refused


def check_approval(
    *,
    stored_key: bytes,
    expires_at: int,
    approved: bool,
    given_key: bytes,
    devices: int,
    max_devices: int,
    now: int,
) -> None:
    """Refuse approving a request that expired (EXPIRED), was approved before or names another
    ephemeral key (CONFLICT), or an account that has ``max_devices`` already (FORBIDDEN)."""
    if expires_at <= now:
        raise Refused(ErrorCode.EXPIRED, "the provisioning request expired")
    if approved:
        raise Refused(ErrorCode.CONFLICT, "the provisioning request was already approved")
    if not hmac.compare_digest(stored_key, given_key):
        raise Refused(ErrorCode.CONFLICT, "the ephemeral key differs from the link code's")
    if devices >= max_devices:
        raise Refused(ErrorCode.FORBIDDEN, f"an account has at most {max_devices} devices")


def check_fetch(
    *, stored_hash: bytes, given_hash: bytes, expires_at: int, approved: bool, now: int
) -> None:
    """Refuse handing out a request's result to the wrong secret (UNAUTHORIZED), after it
    expired (EXPIRED) or before it was approved (PENDING)."""
    if not hmac.compare_digest(stored_hash, given_hash):
        raise Refused(ErrorCode.UNAUTHORIZED, "wrong provisioning secret")
    if expires_at <= now:
        raise Refused(ErrorCode.EXPIRED, "the provisioning request expired")
    if not approved:
        raise Refused(ErrorCode.PENDING, "not approved yet")
