"""Records the vault store hands back."""

from __future__ import annotations

from dataclasses import dataclass

#: Pages one account may hold, whatever their size: the byte quota counts only sealed bytes,
#: so without a count a flood of one-byte pages would make rows (ids, indexes) unbounded.
MAX_PAGES_PER_ACCOUNT = 100_000


@dataclass(frozen=True, slots=True)
class VaultKeyRecord:
    """One account's enrolment and its failed-proof state."""

    account_id: str
    wrapped: bytes
    params: bytes
    verifier: bytes
    failures: int
    #: ms: no proof is checked before this time
    blocked_until: int
    last_failure: int


@dataclass(frozen=True, slots=True)
class StoredPage:
    page_id: str
    generation: int
    sealed: bytes


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    account_id: str
    username: str
    device_id: int
