"""What ``tidings admin`` can do, on the running server's own store and connections: disabling
or removing an account closes its devices' connections at once (4401), which a second process
writing to the database could not do."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from tidings.protocol import ErrorCode
from tidings.server.admin.records import AdminStore, DeviceRow, InviteRow, StoreStats, UserRow
from tidings.server.auth import Authenticator
from tidings.server.bus.base import Bus
from tidings.server.store import Refused, Store

log = logging.getLogger(__name__)


def invite_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _now() -> int:
    return time.time_ns() // 1_000_000


class AdminService:
    def __init__(
        self,
        admin_store: AdminStore,
        store: Store,
        auth: Authenticator,
        bus: Bus,
        clock: Callable[[], int] = _now,
        connections: Callable[[], int] | None = None,
    ) -> None:
        self.store = admin_store
        self._core = store
        self._auth = auth
        self._bus = bus
        self._clock = clock
        self._connections = connections
        #: called after devices were removed (the push registrations, the caches)
        self.on_removed: Callable[[str, list[int]], Awaitable[None]] | None = None

    async def start(self) -> None:
        """Load the accounts whose tokens are refused."""
        self._auth.inactive = await self.store.inactive_accounts()

    async def _account(self, username: str) -> str:
        account_id = await self.store.account_id(username)
        if account_id is None:
            raise Refused(ErrorCode.NOT_FOUND, f"no user {username!r}")
        return account_id

    async def users(self) -> list[UserRow]:
        return await self.store.users()

    async def _close(self, account_id: str, device_ids: list[int]) -> None:
        for device_id in device_ids:
            self._auth.forget(account_id, device_id)
            await self._bus.revoke(account_id, device_id)

    async def disable(self, username: str) -> UserRow:
        account_id = await self._account(username)
        device_ids = await self.store.set_status(account_id, "disabled", self._clock())
        self._auth.inactive.add(account_id)
        await self._close(account_id, device_ids)
        log.info("account %s disabled by the operator", account_id)
        return await self._user(account_id)

    async def enable(self, username: str) -> UserRow:
        account_id = await self._account(username)
        row = await self._user(account_id)
        if row.status == "removed":
            raise Refused(ErrorCode.CONFLICT, f"{username!r} was removed; it cannot come back")
        await self.store.set_status(account_id, "active", self._clock())
        self._auth.inactive.discard(account_id)
        log.info("account %s enabled by the operator", account_id)
        return await self._user(account_id)

    async def remove(self, username: str) -> UserRow:
        """Drop every device of the account and keep its name reserved (nobody can sign up
        as a removed user and be taken for them)."""
        account_id = await self._account(username)
        device_ids = await self.store.set_status(account_id, "removed", self._clock())
        self._auth.inactive.add(account_id)
        await self._close(account_id, device_ids)
        if self.on_removed is not None and device_ids:
            await self.on_removed(account_id, device_ids)
        log.info("account %s removed by the operator", account_id)
        return await self._user(account_id)

    async def _user(self, account_id: str) -> UserRow:
        for row in await self.store.users():
            if row.account_id == account_id:
                return row
        raise Refused(ErrorCode.NOT_FOUND, "no such user")

    async def devices(self, username: str) -> list[DeviceRow]:
        return await self.store.devices(await self._account(username))

    async def remove_device(self, username: str, device_id: int) -> None:
        account_id = await self._account(username)
        if not await self._core.remove_device(account_id, device_id):
            raise Refused(ErrorCode.NOT_FOUND, f"{username!r} has no device {device_id}")
        await self._close(account_id, [device_id])
        if self.on_removed is not None:
            await self.on_removed(account_id, [device_id])
        log.info("account %s: device %d removed by the operator", account_id, device_id)

    async def create_invite(
        self, uses: int, expires_in: float | None, note: str = "", username: str | None = None
    ) -> tuple[InviteRow, str]:
        """A new invite and its token (shown once: only its hash is kept)."""
        if uses < 1:
            raise Refused(ErrorCode.BAD_FRAME, "an invite needs at least one use")
        invite_id = secrets.token_hex(4)
        token = f"inv-{secrets.token_urlsafe(18)}"
        now = self._clock()
        expires_at = None if expires_in is None else now + int(expires_in * 1000)
        await self.store.create_invite(
            invite_id, invite_hash(token), uses, expires_at, now, note, username
        )
        row = next(r for r in await self.store.invites() if r.id == invite_id)
        log.info("invite %s created (%d uses)", invite_id, uses)
        return row, token

    async def invites(self) -> list[InviteRow]:
        return await self.store.invites()

    async def revoke_invite(self, invite_id: str) -> None:
        if not await self.store.revoke_invite(invite_id, self._clock()):
            raise Refused(ErrorCode.NOT_FOUND, f"no active invite {invite_id!r}")
        log.info("invite %s revoked", invite_id)

    async def claim_invite(self, token: str, username: str) -> bytes:
        """Count one use of ``token`` for ``username``; its hash, to refund a sign-up that
        then fails. Refused ``registration_closed`` for an invalid one."""
        token_hash = invite_hash(token)
        if not await self.store.claim_invite(token_hash, username, self._clock()):
            raise Refused(
                ErrorCode.REGISTRATION_CLOSED,
                "the invite is not valid: unknown, revoked, expired, used up or for another name",
            )
        return token_hash

    async def refund_invite(self, token_hash: bytes) -> None:
        await self.store.refund_invite(token_hash)

    async def stats(self) -> dict[str, int]:
        stats: StoreStats = await self.store.stats()
        result = {f: getattr(stats, f) for f in stats.__struct_fields__}
        if self._connections is not None:
            result["connections"] = self._connections()
        return result
