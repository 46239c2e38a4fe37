"""The device-list digest a group Send carries (docs/e2ee.md).

A sender encrypts a group message once (Sender Keys) for the devices it believes the members
have; the server refuses the Send with ``StaleDevices`` unless the digest of its own list is
equal. Both sides compute the digest here, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: Length of ``Send.devices_digest`` (SHA-256) when present.
DIGEST_BYTES = 32


def device_address(account_id: str, device_id: int) -> str:
    """One device as the wire names it: ``account:device`` (``DeviceAddress`` in frames)."""
    return f"{account_id}:{device_id}"


def devices_digest(addresses: Iterable[str]) -> bytes:
    """SHA-256 of the sorted, newline-joined device addresses."""
    return hashlib.sha256("\n".join(sorted(addresses)).encode()).digest()
