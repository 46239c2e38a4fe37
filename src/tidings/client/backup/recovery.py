"""Account recovery with a username and a passphrase, and vault hand-over to linked devices.

Recovery (docs/e2ee.md, "The history vault"): params for the username → Argon2id (checked
against production :class:`~tidings.crypto.vault.KdfLimits` first) → proof of the credential
→ the wrapped key and a one-time ticket → unwrap → ``POST /v1/vault/register`` creates a new
device of the account with a token chosen here (as at sign-up: a lost answer is repeated with
the same ticket and token) → the secrets page gives the identity key pair, so the device
uploads keys with the *same* identity key: contacts keep the same safety number and see no
identity change → contacts' verified state, conversation read state and the history are
restored. A wrong passphrase raises :class:`WrongPassphraseError` before anything is written.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from tidings.crypto import IdentityKeyPair
from tidings.crypto.errors import VaultError, WrongPassphrase
from tidings.crypto.vault import (
    PRODUCTION_LIMITS,
    KdfLimits,
    KdfParams,
    derive_vault_secrets,
    unwrap_vault_key,
)

from ..api import Client
from ..config import ClientConfig
from ..errors import ClientError, Forbidden
from ..features.accounts import (
    DB_NAME,
    TOKEN_NAME,
    _new_token,
    _remove_profile_files,
    _write_private,
)
from ..rest import Rest, retrying
from ..store import LocalStore, private_dir
from ..types import Account
from . import local
from .pages import encode_page, open_history_page
from .pending import PENDING_PAGE_ID, open_pending
from .records import insert_pending, insert_records
from .retention import prune
from .secrets import SECRETS_PAGE_ID, open_secrets
from .service import WrongPassphraseError
from .uploader import MANIFEST_PAGE_ID, open_manifest, parse_history_id
from .vault_client import VaultApi

Progress = Callable[[str, int, int], None]


async def adopt_vault(
    store: LocalStore,
    api: VaultApi,
    vault_key: bytes,
    wrapped: bytes,
    *,
    keep: int,
    restore: bool,
    on_progress: Progress | None = None,
) -> int:
    """Make this device use the account's vault: index its pages (so older history loads
    lazily), apply the secrets page's contacts and read state, and with ``restore`` bring the
    newest ``keep`` messages per conversation into the local store. Messages restored."""
    account = store.account()
    assert account is not None
    account_id = account.account_id
    listing = await api.list()
    if MANIFEST_PAGE_ID not in listing:
        manifest: dict[str, int] = {}
    else:
        fetched = await api.fetch_all([MANIFEST_PAGE_ID])
        manifest = open_manifest(vault_key, account_id, fetched[MANIFEST_PAGE_ID].sealed)
    # A page the manifest names but the server lacks or holds older: partial rollback.
    for page_id, generation in manifest.items():
        if listing.get(page_id, (-1, 0))[0] < generation:
            raise ClientError("vault_rollback", f"the vault lost page {page_id!r}: refusing it")
    db = store.db
    local.install(db)
    secrets_page = (await api.fetch([SECRETS_PAGE_ID])).get(SECRETS_PAGE_ID)
    with store.transaction():
        local.save_keys(db, local.VaultKeys(vault_key, wrapped), 0)
        if secrets_page is not None:
            record, generation = open_secrets(
                vault_key, account_id, secrets_page.sealed,
                min_generation=manifest.get(SECRETS_PAGE_ID, 0),
            )  # fmt: skip
            for contact in record.contacts:
                db.execute(
                    "INSERT OR REPLACE INTO e2ee_identities (account_id, identity_key, verified,"
                    " blocked, first_seen) VALUES (?, ?, ?, ?, 0)",
                    (contact.account_id, contact.identity_key, contact.verified, contact.blocked),
                )
            for conv in record.conversations:
                read_upto = msgspec.msgpack.decode(conv.extra or b"\x91\x00", type=list[int])[0]
                db.execute(
                    "INSERT INTO conversations (id, read_upto) VALUES (?, ?) ON CONFLICT (id)"
                    " DO UPDATE SET read_upto = max(read_upto, excluded.read_upto)",
                    (conv.conv_id, read_upto),
                )
            local.record_upload(db, SECRETS_PAGE_ID, generation, None)
        for page_id, generation in manifest.items():
            parsed = parse_history_id(page_id)
            span = None
            if parsed is not None:
                index = parsed[1] // local.PARTS
                span = (parsed[0], index, index * local.SPAN + 1, (index + 1) * local.SPAN)
            local.record_upload(db, page_id, generation, None, span)
        if MANIFEST_PAGE_ID in listing:
            local.record_upload(db, MANIFEST_PAGE_ID, listing[MANIFEST_PAGE_ID][0], None)
    store.keys.forget_cached()
    if not restore:
        return 0
    history = sorted(p for p in manifest if parse_history_id(p) is not None)
    restored = 0
    for start in range(0, len(history), 16):
        chunk = history[start : start + 16]
        fetched = await api.fetch_all(chunk)
        with store.transaction():
            for page_id in chunk:
                parsed = parse_history_id(page_id)
                assert parsed is not None
                page, _generation = open_history_page(
                    vault_key, account_id, parsed[0], parsed[1], fetched[page_id].sealed,
                    min_generation=manifest[page_id],
                )  # fmt: skip
                restored += insert_records(db, account_id, page.messages)
                # the digest of the deterministic encoding: an unchanged page is not re-sealed
                digest = hashlib.sha256(encode_page(page)).digest()
                db.execute(
                    "UPDATE vault_uploaded SET digest = ? WHERE page_id = ?", (digest, page_id)
                )
        if on_progress is not None:
            on_progress("restore", min(start + 16, len(history)), len(history))
    if PENDING_PAGE_ID in listing:
        sealed = (await api.fetch_all([PENDING_PAGE_ID]))[PENDING_PAGE_ID].sealed
        unsent = open_pending(
            vault_key, account_id, sealed, min_generation=manifest.get(PENDING_PAGE_ID, 0)
        )
        with store.transaction():
            restored += insert_pending(db, account_id, unsent)
            local.record_upload(db, PENDING_PAGE_ID, listing[PENDING_PAGE_ID][0], None)
    db.execute("DELETE FROM vault_dirty")
    db.commit()
    prune(store, keep)
    return restored


async def recover_account(
    server_url: str,
    profile: Path,
    username: str,
    passphrase: str,
    *,
    device_name: str = "recovered",
    config: ClientConfig | None = None,
    limits: KdfLimits = PRODUCTION_LIMITS,
    on_progress: Progress | None = None,
) -> Client:
    """Become ``username`` on a new device at ``profile`` with the vault passphrase alone.
    Returns the new device's client (not started). :class:`WrongPassphraseError` for a wrong
    passphrase (the server counts it and slows further tries: ``rate_limited``)."""
    profile = Path(profile)
    config = config or ClientConfig()
    if (profile / TOKEN_NAME).exists():
        raise ClientError("profile_exists", f"{profile} already holds an account")
    anonymous = Rest(server_url, timeout=config.http_timeout)
    try:
        api = VaultApi(anonymous)
        try:
            params = KdfParams.decode(await api.params(username))
            derived = await asyncio.to_thread(
                derive_vault_secrets, passphrase, params, limits=limits
            )
        except VaultError as exc:
            raise ClientError(
                "bad_vault", f"the server's vault params are refused: {exc}"
            ) from None
        if on_progress is not None:
            on_progress("derive", 1, 1)
        try:
            recovered = await api.recover(username, derived.credential)
        except Forbidden:
            raise WrongPassphraseError() from None
        try:
            vault_key = unwrap_vault_key(
                recovered.wrapped, derived.wrapping_key, account_id=recovered.account_id
            )
        except WrongPassphrase:
            raise WrongPassphraseError("the vault key does not open (altered?)") from None
        token = _new_token()
        private_dir(profile)
        _write_private(profile / TOKEN_NAME, token)
        try:
            device = await retrying(lambda: api.register(recovered.ticket, token, device_name))
        except ClientError:
            _remove_profile_files(profile)
            raise
    finally:
        await anonymous.aclose()
    account = Account(device.account_id, device.username, device.device_id, server_url)
    store = LocalStore(profile / DB_NAME)
    store.set_account(account)
    rest = Rest(server_url, token, config.http_timeout)
    try:
        secrets_page = (await VaultApi(rest).fetch([SECRETS_PAGE_ID])).get(SECRETS_PAGE_ID)
        if secrets_page is None:
            raise ClientError("bad_vault", "the vault holds no account secrets")
        record, _generation = open_secrets(vault_key, account.account_id, secrets_page.sealed)
        store.keys.set_identity(
            IdentityKeyPair.deserialize(record.identity), record.registration_id
        )
        await adopt_vault(
            store, VaultApi(rest), vault_key, recovered.wrapped,
            keep=config.keep_messages, restore=True, on_progress=on_progress,
        )  # fmt: skip
    finally:
        await rest.aclose()
    client = Client(profile, store, account, token, config)
    await client._upload_keys(first_link=True)
    return client
