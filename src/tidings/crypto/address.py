"""The address of one device of one account, as libsignal's ``ProtocolAddress``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProtocolAddress"]


@dataclass(frozen=True, slots=True)
class ProtocolAddress:
    """``name`` (the account, e.g. its UUID) and ``device_id``; hashable, usable as a key."""

    name: str
    device_id: int

    def __str__(self) -> str:
        return f"{self.name}.{self.device_id}"
