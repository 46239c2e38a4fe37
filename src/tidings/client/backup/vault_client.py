"""The vault's REST calls (routes and bodies: tidings.protocol.routes / tidings.protocol.vault)."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.protocol import routes
from tidings.protocol import vault as wire

from ..errors import ClientError
from ..rest import Rest

#: pages and bytes of one upload call (the server takes up to 64 pages, 8 MiB of JSON)
UPLOAD_PAGES = 32
UPLOAD_BYTES = 4 * 1024 * 1024


class VaultApi:
    def __init__(self, rest: Rest) -> None:
        self.rest = rest

    async def status(self) -> wire.VaultStatus:
        return await self.rest.call(routes.VAULT_STATUS, wire.VaultStatus)

    async def enrol(self, wrapped: bytes, params: bytes, credential: bytes) -> wire.VaultStatus:
        body = wire.VaultEnrol(wrapped=wrapped, params=params, credential=credential)
        return await self.rest.call(routes.VAULT_ENROL, wire.VaultStatus, body)

    async def reset(self) -> wire.VaultStatus:
        """Delete the account's vault (enrolment and pages)."""
        return await self.rest.call(routes.VAULT_RESET, wire.VaultStatus)

    async def params(self, username: str) -> bytes:
        found = await self.rest.call(routes.VAULT_PARAMS, wire.VaultParams, username=username)
        return found.params

    async def recover(self, username: str, credential: bytes) -> wire.VaultRecovered:
        body = wire.VaultProof(username=username, credential=credential)
        return await self.rest.call(routes.VAULT_RECOVER, wire.VaultRecovered, body)

    async def register(self, ticket: str, token: str, device_name: str) -> wire.RecoveredDevice:
        body = wire.RecoverDevice(ticket=ticket, token=token, device_name=device_name)
        return await self.rest.call(routes.VAULT_REGISTER, wire.RecoveredDevice, body)

    async def change(
        self, old_credential: bytes, wrapped: bytes, params: bytes, credential: bytes
    ) -> wire.VaultStatus:
        body = wire.ChangePassphrase(
            old_credential=old_credential, wrapped=wrapped, params=params, credential=credential
        )
        return await self.rest.call(routes.VAULT_PASSPHRASE, wire.VaultStatus, body)

    async def put(self, pages: Sequence[wire.VaultPage]) -> wire.VaultStatus:
        """Store ``pages`` (all or none)."""
        return await self.rest.call(
            routes.VAULT_PUT_PAGES, wire.VaultStatus, wire.VaultPages(pages=list(pages))
        )

    async def list(self) -> dict[str, tuple[int, int]]:
        """page id → (generation, size)"""
        found = await self.rest.call(routes.VAULT_LIST_PAGES, wire.PageList)
        return {p.id: (p.generation, p.size) for p in found.pages}

    async def fetch(self, page_ids: Sequence[str]) -> dict[str, wire.VaultPage]:
        out: dict[str, wire.VaultPage] = {}
        ids = list(dict.fromkeys(page_ids))
        for start in range(0, len(ids), 16):
            body = wire.FetchPages(ids=ids[start : start + 16])
            for page in await self.rest.call(routes.VAULT_FETCH_PAGES, list[wire.VaultPage], body):
                out[page.id] = page
        return out

    async def fetch_all(self, page_ids: Sequence[str]) -> dict[str, wire.VaultPage]:
        """:meth:`fetch`, where every page asked for must come back: a page the listing named
        but the server no longer returns (removed meanwhile, or withheld) is a typed
        ``vault_incomplete`` error rather than a half-written export or restore."""
        out = await self.fetch(page_ids)
        missing = [page_id for page_id in page_ids if page_id not in out]
        if missing:
            raise ClientError(
                "vault_incomplete",
                f"the server did not return {len(missing)} vault page(s) it had listed "
                f"(first: {missing[0]!r}); nothing was written — try again",
            )
        return out
