"""What the admin API reads and writes, as plain records (no back end named here)."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

Status = Literal["active", "disabled", "removed"]


class UserRow(msgspec.Struct, frozen=True):
    account_id: str
    username: str
    created_at: int
    devices: int
    status: Status


class DeviceRow(msgspec.Struct, frozen=True):
    device_id: int
    name: str
    created_at: int


class InviteRow(msgspec.Struct, frozen=True):
    id: str
    max_uses: int
    uses: int
    expires_at: int | None
    created_at: int
    revoked_at: int | None
    note: str
    username: str | None


class StoreStats(msgspec.Struct, frozen=True):
    accounts: int
    disabled_accounts: int
    devices: int
    conversations: int
    groups: int
    envelopes: int
    pending: int
    invites_active: int
    database_bytes: int


class AdminStore(Protocol):
    """The operator's view of a store (:mod:`tidings.server.store.sqlite.admin` for SQLite)."""

    async def users(self) -> list[UserRow]: ...
    async def account_id(self, username: str) -> str | None: ...
    async def devices(self, account_id: str) -> list[DeviceRow]: ...
    async def set_status(self, account_id: str, status: Status, now: int) -> list[int]: ...
    async def inactive_accounts(self) -> set[str]: ...
    async def create_invite(
        self,
        invite_id: str,
        token_hash: bytes,
        max_uses: int,
        expires_at: int | None,
        now: int,
        note: str,
        username: str | None,
    ) -> None: ...
    async def invites(self) -> list[InviteRow]: ...
    async def revoke_invite(self, invite_id: str, now: int) -> bool: ...
    async def claim_invite(self, token_hash: bytes, username: str, now: int) -> bool: ...
    async def refund_invite(self, token_hash: bytes) -> None: ...
    async def stats(self) -> StoreStats: ...
    async def pending_depth(self) -> int: ...
    async def ready(self, within: float) -> bool: ...
