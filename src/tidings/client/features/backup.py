"""The part of :class:`~tidings.client.Client` that the history vault adds (a mixin; the work
is :mod:`tidings.client.backup`'s): turning backup on and off, its passphrase, uploading now,
export and import, and searching what is kept only in the vault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..backup.service import BackupStatus

if TYPE_CHECKING:
    from ..backup.service import BackupService
    from ..config import ClientConfig
    from ..store import LocalStore
    from ..types import SearchHit


class BackupFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        config: ClientConfig
        _store: LocalStore
        _backup: BackupService

        def _check_open(self) -> None: ...

    async def search_older(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Search the history kept only in the vault (downloads and opens its pages)."""
        self._check_open()
        return await self._backup.search_older(query, max(1, limit))

    async def enable_backup(self, passphrase: str) -> None:
        """Enrol the account's history vault under ``passphrase`` (``weak_passphrase`` if the
        estimate is too low) and start uploading in the background. If the account already
        has a vault, its key is adopted when ``passphrase`` opens it (``BackupExists``
        otherwise: change the passphrase or :meth:`reset_backup`)."""
        self._check_open()
        await self._backup.enable(passphrase)

    async def reset_backup(self) -> None:
        """Delete the account's vault on the server (history kept only there is lost) and
        turn backup off on this device; :meth:`enable_backup` starts a new one."""
        self._check_open()
        await self._backup.reset()

    async def backup_status(self) -> BackupStatus:
        return await self._backup.status()

    async def backup_now(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Upload what changed now (and apply local retention); pages uploaded."""
        self._check_open()
        return await self._backup.upload_now(on_progress)

    async def change_passphrase(self, old: str, new: str) -> None:
        """Re-wrap the vault key under a new passphrase (``wrong_passphrase`` for a wrong
        old one)."""
        self._check_open()
        await self._backup.change_passphrase(old, new)

    async def export_backup(
        self, path: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Write the whole vault to ``path`` (readable with the passphrase alone)."""
        self._check_open()
        return await self._backup.export(Path(path), on_progress)

    async def import_backup(self, path: Path, passphrase: str) -> int:
        """Add the messages of an export file of this account; how many were new."""
        self._check_open()
        return await self._backup.import_(Path(path), passphrase)

    async def _adopt_vault(self, vault_key: bytes, wrapped: bytes) -> None:
        from ..backup.recovery import adopt_vault

        self._backup.adopt(vault_key, wrapped)
        await adopt_vault(
            self._store, self._backup.api, vault_key, wrapped,
            keep=self.config.keep_messages, restore=False,
        )  # fmt: skip
