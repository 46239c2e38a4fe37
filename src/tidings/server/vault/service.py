"""The vault's rules: enrolment, params by username, recovery proofs with backoff, one-time
recovery tickets, passphrase change and generation-checked pages (tidings.server.vault)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

from tidings.protocol import ErrorCode
from tidings.protocol import vault as wire
from tidings.server.auth import secret_hash
from tidings.server.domain import Refused
from tidings.server.vault.attempts import Backoff
from tidings.server.vault.keys import VaultKeys
from tidings.server.vault.records import StoredPage
from tidings.server.vault.store import VaultStore

log = logging.getLogger(__name__)

#: how long a recovery ticket may be exchanged for a device (ms)
TICKET_TTL_MS = 10 * 60 * 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(b"tidings vault ticket v1" + ticket.encode()).digest()


class VaultService:
    def __init__(
        self,
        store: VaultStore,
        keys: VaultKeys,
        *,
        quota_bytes: int,
        max_devices: int,
        backoff: Backoff | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.store = store
        self.keys = keys
        self.quota = quota_bytes
        self.max_devices = max_devices
        self.accounts = backoff or Backoff()
        self.addresses = Backoff(
            free=self.accounts.free * 4, base=self.accounts.base, cap=self.accounts.cap
        )
        self.clock = clock

    async def status(self, account_id: str) -> wire.VaultStatus:
        if await self.store.vault_key(account_id) is None:
            return wire.VaultStatus(enrolled=False, quota=self.quota)
        pages, size = await self.store.vault_usage(account_id)
        return wire.VaultStatus(enrolled=True, pages=pages, bytes=size, quota=self.quota)

    async def enrol(self, account_id: str, body: wire.VaultEnrol) -> wire.VaultStatus:
        verifier = self.keys.verifier(body.credential)
        if not await self.store.vault_enrol(
            account_id, body.wrapped, body.params, verifier, self.clock()
        ):
            raise Refused(
                ErrorCode.CONFLICT, "the account has a vault: change its passphrase instead"
            )
        log.info("vault: account %s enrolled", account_id)
        return await self.status(account_id)

    async def params(self, username: str) -> wire.VaultParams:
        # Both paths read the account and its vault row and compute one HMAC: an unknown
        # username answers like a known one, with params of the same shape.
        account_id = await self.store.vault_account_id(username)
        record = await self.store.vault_key(account_id or "")
        fake = self.keys.fake_params(username)
        return wire.VaultParams(params=record.params if record is not None else fake)

    async def recover(self, address: str, body: wire.VaultProof) -> wire.VaultRecovered:
        now = self.clock()
        account_id = await self.store.vault_account_id(body.username)
        record = await self.store.vault_key(account_id) if account_id is not None else None
        name_key = f"u:{body.username}"
        if record is not None:
            failures = self.accounts.current(record.failures, record.last_failure, now)
            wait = max(0, record.blocked_until - now) if failures else 0
        else:
            failures, wait = 0, self.accounts.blocked(name_key, now)
        wait = max(wait, self.addresses.blocked(address, now))
        if wait:
            log.warning(
                "vault: recovery of %r from %s refused, backing off", body.username, address
            )
            raise Refused(
                ErrorCode.RATE_LIMITED,
                f"too many failed attempts: try again in {max(1, wait // 1000)} s",
            )
        verifier = self.keys.verifier(body.credential)
        if record is None or not hmac.compare_digest(record.verifier, verifier):
            self.addresses.fail(address, now)
            if record is not None:
                failures += 1
                await self.store.vault_failure(
                    record.account_id, failures, now + self.accounts.delay_ms(failures), now
                )
            else:
                failures = self.accounts.fail(name_key, now)
            log.warning(
                "vault: failed recovery proof for %r from %s (%d failures)",
                body.username,
                address,
                failures,
            )
            raise Refused(ErrorCode.FORBIDDEN, "wrong passphrase (or no vault for this username)")
        await self.store.vault_success(record.account_id)
        ticket = secrets.token_urlsafe(32)
        expires = now + TICKET_TTL_MS
        await self.store.vault_ticket(_ticket_hash(ticket), record.account_id, expires)
        log.info("vault: account %s recovered from %s", record.account_id, address)
        return wire.VaultRecovered(
            account_id=record.account_id, wrapped=record.wrapped, ticket=ticket, expires_at=expires
        )

    async def register(self, body: wire.RecoverDevice) -> wire.RecoveredDevice:
        token_key, _, secret = body.token.partition(".")
        device = await self.store.vault_register(
            _ticket_hash(body.ticket),
            token_key,
            secret_hash(secret),
            body.device_name,
            self.clock(),
            self.max_devices,
        )
        log.info("vault: account %s recovered as device %d", device.account_id, device.device_id)
        return wire.RecoveredDevice(
            account_id=device.account_id,
            username=device.username,
            device_id=device.device_id,
            token=body.token,
        )

    async def change_passphrase(
        self, account_id: str, body: wire.ChangePassphrase
    ) -> wire.VaultStatus:
        now = self.clock()
        record = await self.store.vault_key(account_id)
        if record is None:
            raise Refused(ErrorCode.NOT_FOUND, "the account has no vault")
        failures = self.accounts.current(record.failures, record.last_failure, now)
        if failures and record.blocked_until > now:
            raise Refused(ErrorCode.RATE_LIMITED, "too many failed attempts: try again later")
        if not await self.store.vault_replace_key(
            account_id,
            self.keys.verifier(body.old_credential),
            body.wrapped,
            body.params,
            self.keys.verifier(body.credential),
            now,
        ):
            failures += 1
            await self.store.vault_failure(
                account_id, failures, now + self.accounts.delay_ms(failures), now
            )
            log.warning("vault: account %s: passphrase change with a wrong proof", account_id)
            raise Refused(ErrorCode.FORBIDDEN, "wrong passphrase")
        log.info("vault: account %s changed its passphrase", account_id)
        return await self.status(account_id)

    async def put_pages(self, account_id: str, body: wire.VaultPages) -> wire.VaultStatus:
        if await self.store.vault_key(account_id) is None:
            raise Refused(ErrorCode.NOT_FOUND, "the account has no vault")
        ids = [page.id for page in body.pages]
        if len(set(ids)) != len(ids):
            raise Refused(ErrorCode.BAD_FRAME, "a page appears twice")
        pages = [StoredPage(p.id, p.generation, p.sealed) for p in body.pages]
        count, size = await self.store.vault_put_pages(account_id, pages, self.quota, self.clock())
        return wire.VaultStatus(enrolled=True, pages=count, bytes=size, quota=self.quota)

    async def reset(self, account_id: str) -> wire.VaultStatus:
        """Delete the account's vault (a signed-in device asked: "reset backup")."""
        if await self.store.vault_delete(account_id):
            log.info("vault: account %s deleted its vault", account_id)
        return await self.status(account_id)

    async def list_pages(self, account_id: str) -> wire.PageList:
        rows = await self.store.vault_list(account_id)
        return wire.PageList(pages=[wire.PageInfo(i, g, s) for i, g, s in rows])

    async def fetch_pages(self, account_id: str, body: wire.FetchPages) -> list[wire.VaultPage]:
        found = await self.store.vault_fetch(account_id, body.ids)
        return [wire.VaultPage(p.page_id, p.generation, p.sealed) for p in found]
