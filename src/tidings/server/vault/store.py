"""What the vault needs from the server's database (the SQLite store implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tidings.server.vault.records import RegisteredDevice, StoredPage, VaultKeyRecord


class VaultStore(Protocol):
    async def vault_account_id(self, username: str) -> str | None:
        """The account id of ``username``, if it exists."""
        ...

    async def vault_key(self, account_id: str) -> VaultKeyRecord | None: ...

    async def vault_enrol(
        self, account_id: str, wrapped: bytes, params: bytes, verifier: bytes, now: int
    ) -> bool:
        """Store the enrolment; False (nothing changed) if another one is stored."""
        ...

    async def vault_replace_key(
        self,
        account_id: str,
        old_verifier: bytes,
        wrapped: bytes,
        params: bytes,
        verifier: bytes,
        now: int,
    ) -> bool:
        """Replace the enrolment if ``old_verifier`` is the stored one (checked in the same
        transaction, constant time); False otherwise."""
        ...

    async def vault_failure(
        self, account_id: str, failures: int, blocked_until: int, now: int
    ) -> None:
        """Record a failed proof: the count, and until when proofs are refused."""
        ...

    async def vault_success(self, account_id: str) -> None: ...

    async def vault_put_pages(
        self, account_id: str, pages: Sequence[StoredPage], quota: int, now: int
    ) -> tuple[int, int]:
        """Store every page or none (``Refused``: conflict for a lower generation, quota);
        the account's (pages, bytes) after."""
        ...

    async def vault_delete(self, account_id: str) -> bool:
        """Remove the enrolment, every page and every ticket of the account; False if it had
        no vault."""
        ...

    async def vault_usage(self, account_id: str) -> tuple[int, int]: ...

    async def vault_list(self, account_id: str) -> list[tuple[str, int, int]]: ...

    async def vault_fetch(self, account_id: str, page_ids: Sequence[str]) -> list[StoredPage]: ...

    async def vault_ticket(self, ticket_hash: bytes, account_id: str, expires_at: int) -> None: ...

    async def vault_register(
        self,
        ticket_hash: bytes,
        token_key: str,
        token_hash: bytes,
        device_name: str,
        now: int,
        max_devices: int,
    ) -> RegisteredDevice:
        """A new device of the ticket's account with this token (``Refused`` otherwise); the
        same ticket and token again answer the same device."""
        ...
