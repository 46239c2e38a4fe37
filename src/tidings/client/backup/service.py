"""The backup side of a :class:`~tidings.client.api.Client`: enrolment, status, passphrase
change, export/import, the background uploader with local retention, and history from the
vault (the Client's methods delegate here; docs/client-api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidings.crypto.errors import VaultError, WrongPassphrase
from tidings.crypto.vault import (
    KdfLimits,
    KdfParams,
    change_passphrase,
    derive_vault_secrets,
    enrol,
    unwrap_vault_key,
)

from ..errors import ClientError, Conflict, Forbidden, ServerRefused
from ..rest import Rest
from ..store import LocalStore
from ..types import Account, Page, SearchHit
from . import local
from .export import ExportWriter, read_export
from .pages import PageError
from .records import insert_records
from .retention import VaultHistory, prune
from .strength import estimate_passphrase
from .uploader import Uploader, parse_history_id
from .vault_client import VaultApi

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class WrongPassphraseError(ClientError):
    """``wrong_passphrase``: the passphrase does not open this vault (nothing was changed)."""

    def __init__(self, message: str = "wrong passphrase") -> None:
        super().__init__("wrong_passphrase", message)


class BackupExists(ClientError):
    """``backup_exists``: the account already has a vault under another passphrase."""

    def __init__(self) -> None:
        super().__init__(
            "backup_exists",
            "backup is already set up with another passphrase: use change-passphrase, or"
            " reset backup",
        )


@dataclass(frozen=True, slots=True)
class BackupStatus:
    enabled: bool
    #: history spans changed locally and not uploaded yet
    pending: int
    #: what the server holds (None when it could not be asked)
    pages: int | None
    bytes: int | None
    quota: int | None
    #: ms of the last successful upload run in this process
    last_upload: int | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BackupService:
    def __init__(
        self,
        store: LocalStore,
        account: Account,
        rest: Rest,
        *,
        keep: int,
        interval: float,
        limits: KdfLimits,
        params: KdfParams | None = None,
    ) -> None:
        self.store = store
        self.account = account
        self.api = VaultApi(rest)
        self.keep = keep
        self.interval = interval
        self.limits = limits
        self.params = params
        local.install(store.db)
        self.keys = local.load_keys(store.db)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._history: VaultHistory | None = None
        self.last_upload: int | None = None

    # ------------------------------------------------------------------ enrolment

    def _check_strength(self, passphrase: str) -> None:
        host = urllib.parse.urlsplit(self.account.server_url).hostname or ""
        strength = estimate_passphrase(passphrase, [self.account.username, host])
        if not strength.acceptable:
            hint = strength.warning or "use several unrelated words"
            raise ClientError("weak_passphrase", f"the passphrase is too weak: {hint}")

    async def enable(self, passphrase: str) -> None:
        """Enrol this account's vault and start uploading; ``weak_passphrase`` if too weak.

        If the account already has a vault (another device enrolled it, or an enable of this
        device was killed after the server stored the enrolment), the passphrase is proved
        against it and its vault key adopted: :class:`BackupExists` if it does not match."""
        if self.keys is not None:
            raise ClientError("backup_enabled", "backup is already enabled on this device")
        self._check_strength(passphrase)
        if (await self.api.status()).enrolled:
            await self._readopt(passphrase)
            return
        enrolment = await asyncio.to_thread(
            enrol, passphrase, self.account.account_id, params=self.params, limits=self.limits
        )
        try:
            await self.api.enrol(enrolment.wrapped, enrolment.params.encode(), enrolment.credential)
        except Conflict:  # enrolled meanwhile
            await self._readopt(passphrase)
            return
        keys = local.VaultKeys(enrolment.vault_key, enrolment.wrapped)
        with self.store.transaction():
            local.save_keys(self.store.db, keys, _now_ms())
            local.mark_all_dirty(self.store.db)
        self.keys = keys
        self.wake()

    async def _readopt(self, passphrase: str) -> None:
        """Prove ``passphrase`` against the account's existing vault (the recovery proof: it
        counts toward the server's backoff like any other) and use its vault key."""
        try:
            params = KdfParams.decode(await self.api.params(self.account.username))
            derived = await asyncio.to_thread(
                derive_vault_secrets, passphrase, params, limits=self.limits
            )
        except VaultError as exc:
            refused = f"the server's vault params are refused: {exc}"
            raise ClientError("bad_vault", refused) from None
        try:
            recovered = await self.api.recover(self.account.username, derived.credential)
        except Forbidden:
            raise BackupExists() from None
        if recovered.account_id != self.account.account_id:
            raise ClientError("bad_vault", "the server answered for another account")
        try:
            vault_key = unwrap_vault_key(
                recovered.wrapped, derived.wrapping_key, account_id=recovered.account_id
            )
        except WrongPassphrase:
            raise BackupExists() from None
        from .recovery import adopt_vault  # recovery imports the Client, which imports this

        await adopt_vault(
            self.store, self.api, vault_key, recovered.wrapped, keep=self.keep, restore=False
        )
        with self.store.transaction():
            local.mark_all_dirty(self.store.db)
        self.keys = local.VaultKeys(vault_key, recovered.wrapped)
        self._history = None
        log.info("backup: adopted the account's existing vault")
        self.wake()

    async def reset(self) -> None:
        """Delete the account's vault on the server and forget it here (every device of the
        account stops backing up into it); enable again to start a new one."""
        await self.api.reset()
        with self.store.transaction():
            for table in ("vault_local", "vault_uploaded", "vault_dirty", "vault_pruned"):
                self.store.db.execute(f"DELETE FROM {table}")  # noqa: S608  # constant names
        self.keys = None
        self._history = None

    def adopt(self, vault_key: bytes, wrapped: bytes) -> None:
        """Use a vault key handed over by another device of the account (device linking)."""
        keys = local.VaultKeys(vault_key, wrapped)
        with self.store.transaction():
            local.save_keys(self.store.db, keys, _now_ms())
        self.keys = keys

    async def status(self) -> BackupStatus:
        pending = int(self.store.db.execute("SELECT count(*) FROM vault_dirty").fetchone()[0])
        if self.keys is None:
            return BackupStatus(False, pending, None, None, None, None)
        try:
            remote = await self.api.status()
        except ClientError:
            return BackupStatus(True, pending, None, None, None, self.last_upload)
        return BackupStatus(
            True, pending, remote.pages, remote.bytes, remote.quota, self.last_upload
        )

    async def change_passphrase(self, old: str, new: str) -> None:
        """Re-wrap the vault key under ``new`` (pages stay as they are)."""
        keys = self._require()
        self._check_strength(new)
        try:
            change = await asyncio.to_thread(
                change_passphrase, old, new, self.account.account_id, keys.wrapped,
                params=self.params, limits=self.limits,
            )  # fmt: skip
        except VaultError as exc:
            if isinstance(exc, WrongPassphrase):
                raise WrongPassphraseError() from None
            raise ClientError("bad_vault", str(exc)) from None
        new_wrapped = change.enrolment.wrapped
        try:
            await self.api.change(
                change.old_credential, new_wrapped,
                change.enrolment.params.encode(), change.enrolment.credential,
            )  # fmt: skip
        except ServerRefused as exc:
            if exc.code == "forbidden":
                raise WrongPassphraseError() from None
            raise
        updated = local.VaultKeys(keys.vault_key, new_wrapped)
        with self.store.transaction():
            local.save_keys(self.store.db, updated, _now_ms())
        self.keys = updated

    def _require(self) -> local.VaultKeys:
        if self.keys is None:
            raise ClientError("backup_disabled", "backup is not enabled on this device")
        return self.keys

    # ------------------------------------------------------------------ uploading

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def upload_now(self, on_progress: Progress | None = None) -> int:
        """Upload everything that changed, then apply local retention; pages uploaded."""
        keys = self._require()
        async with self._lock:
            uploader = Uploader(self.store, self.api, keys.vault_key)
            total = 0
            while True:
                total += await uploader.run(on_progress)
                if uploader.pending_spans() == 0:
                    break
            self.last_upload = _now_ms()
            if total and self._history is not None:
                self._history.forget()  # pages changed: read them again when asked
            prune(self.store, self.keep)
            return total

    async def _loop(self) -> None:
        pause = self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()
            if self.keys is None:
                continue
            await asyncio.sleep(1.0)  # let a burst of changes settle into one run
            try:
                await self.upload_now()
            except ClientError as exc:
                log.info("vault upload failed (%s); trying again later", exc.code)
                pause = min(pause * 2, 600.0)
            except Exception:
                log.exception("vault upload failed")
                pause = min(pause * 2, 600.0)
            else:
                pause = self.interval

    # ------------------------------------------------------------------ reading back

    def _reader(self) -> VaultHistory | None:
        if self.keys is None:
            return None
        if self._history is None:
            self._history = VaultHistory(self.store, self.api, self.keys.vault_key)
        return self._history

    async def history(self, conv_id: str, before: int | None, limit: int, page: Page) -> Page:
        reader = self._reader()
        if reader is None:
            return page
        try:
            return await reader.page(conv_id, before, limit, page)
        except (VaultError, PageError) as exc:
            log.warning("a vault page of %s did not authenticate: not shown", conv_id)
            raise ClientError("vault_tampered", f"older history failed its check: {exc}") from None

    async def search_older(self, query: str, limit: int) -> list[SearchHit]:
        reader = self._reader()
        try:
            return [] if reader is None else await reader.search(query, limit)
        except (VaultError, PageError) as exc:
            raise ClientError("vault_tampered", f"older history failed its check: {exc}") from None

    # ------------------------------------------------------------------ export / import

    async def export(self, path: Path, on_progress: Progress | None = None) -> int:
        """Upload what is pending, then write the whole vault to ``path``; pages written."""
        keys = self._require()
        await self.upload_now()
        listing = await self.api.list()
        ids = sorted(listing)
        tmp = path.with_name(path.name + ".part")
        # The export holds the wrapped key (a passphrase guess can be tested against it): 0600,
        # and never through a link someone else left at the temporary name.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            with os.fdopen(os.open(tmp, flags, 0o600), "wb") as stream:
                writer = ExportWriter(
                    stream, vault_key=keys.vault_key, account_id=self.account.account_id,
                    wrapped=keys.wrapped,
                )  # fmt: skip
                for start in range(0, len(ids), 16):
                    fetched = await self.api.fetch_all(ids[start : start + 16])
                    for page_id in ids[start : start + 16]:
                        writer.add(page_id, fetched[page_id].sealed)
                    if on_progress is not None:
                        on_progress(min(start + 16, len(ids)), len(ids))
                writer.finish()
        except BaseException:
            # a failed export leaves no partial file behind
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        tmp.replace(path)
        return len(ids)

    async def import_(self, path: Path, passphrase: str) -> int:
        """Add the history of an export file of this account; messages added."""
        try:
            with path.open("rb") as stream:
                contents = await asyncio.to_thread(
                    read_export, stream, passphrase, limits=self.limits
                )
        except VaultError as exc:
            if isinstance(exc, WrongPassphrase):
                raise WrongPassphraseError() from None
            raise ClientError("bad_export", str(exc)) from None
        if contents.account_id != self.account.account_id:
            raise ClientError("bad_export", "the export is of another account")
        from .pages import decode_page

        added = 0
        with self.store.transaction():
            for page_id, opened in contents.pages.items():
                if parse_history_id(page_id) is None:
                    continue
                added += insert_records(
                    self.store.db, self.account.account_id, decode_page(opened.plaintext).messages
                )
        return added
