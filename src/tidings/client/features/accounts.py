"""The part of :class:`~tidings.client.Client` that sets a device up (a mixin): creating an
account, linking a new device to one and approving it from another, removing a device,
publishing this device's keys, and opening an existing profile.

A profile directory holds ``tidings.db`` (the local store, with the account) and ``token`` (the
device token, mode 0600). The token is chosen on this side and written before the first
request, so a sign-up or a link whose answer was lost is repeated with it and ends in the same
account or device.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Self

from tidings.crypto import IdentityKeyPair, PrivateKey
from tidings.protocol import ErrorCode, rest, routes
from tidings.protocol import keys as wire

from .. import integrity, profilelock, provisioning, tls
from ..config import ClientConfig
from ..errors import (
    ClientError,
    ConnectionLost,
    NotConnected,
    ProfileNotFound,
    ServerRefused,
    ServerTimeout,
)
from ..rest import Rest, approve_link, poll_link, request_link, retrying
from ..store import LocalStore, private_dir
from ..types import Account

if TYPE_CHECKING:
    from ..backup.service import BackupService

log = logging.getLogger("tidings.client")

DB_NAME = "tidings.db"
TOKEN_NAME = "token"  # noqa: S105 - the file name, not a secret
#: a sign-up under way: written with the token before the first request, removed once done
SIGNUP_NAME = "signup.json"
#: seconds a new device waits for its link code to be approved
LINK_TIMEOUT = 600.0


def _new_token() -> str:
    """A device token made on this side (``<key>.<secret>``, protocol.rest.DeviceToken)."""
    return f"{secrets.token_urlsafe(12)}.{secrets.token_urlsafe(32)}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) durably: a sign-up may be retried from it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, 0o600)


def _ws_url(server_url: str) -> str:
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + routes.WEBSOCKET_PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + routes.WEBSOCKET_PATH
    raise ClientError("bad_url", "the server URL must start with http:// or https://")


class AccountFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _rest: Rest
        _backup: BackupService
        _key_upload: asyncio.Lock

        def __init__(
            self,
            profile: Path,
            store: LocalStore,
            account: Account,
            token: str,
            config: ClientConfig | None = None,
        ) -> None: ...
        def _check_open(self) -> None: ...
        async def close(self) -> None: ...
        async def _adopt_vault(self, vault_key: bytes, wrapped: bytes) -> None: ...

    @classmethod
    async def create_account(
        cls,
        profile: Path,
        server_url: str,
        username: str,
        device_name: str = "primary",
        config: ClientConfig | None = None,
        invite: str | None = None,
    ) -> Self:
        """Register ``username`` on the server and write a new profile at ``profile``."""
        profile = Path(profile)
        token = _pending_signup(profile, server_url, username)
        _ws_url(server_url)
        config = config or ClientConfig()
        tls.check_url(server_url, config.insecure)
        context = tls.ssl_context(config.ca_file)
        fresh = token is None
        if token is None:
            # The token is chosen here and kept in the profile before anything goes out: a
            # sign-up whose answer was lost is repeated with it and gets the same account.
            token = _new_token()
            private_dir(profile)
            signup = {"server_url": server_url, "username": username}
            _write_private(profile / SIGNUP_NAME, json.dumps(signup))
            _write_private(profile / TOKEN_NAME, token)
        body = rest.CreateAccount(
            username=username, device_name=device_name, token=token, invite=invite
        )
        anonymous = Rest(server_url, timeout=config.http_timeout, verify=context)
        maybe_reached = not fresh

        async def sign_up() -> rest.AccountCreated:
            nonlocal maybe_reached
            try:
                return await anonymous.call(routes.CREATE_ACCOUNT, rest.AccountCreated, body)
            except (ConnectionLost, ServerTimeout):
                maybe_reached = True  # the server may have created it: keep the token
                raise

        try:
            created = await retrying(sign_up)
        except ServerRefused:
            _remove_profile_files(profile)  # the name is taken: nothing to retry
            raise
        except NotConnected as exc:
            if not maybe_reached:  # no request reached the server: leave no trace
                _remove_profile_files(profile)
                raise
            exc.message += (
                "; the sign-up is kept in the profile: run the same command again to finish it"
            )
            raise
        finally:
            await anonymous.aclose()
        account = Account(created.account_id, created.username, created.device_id, server_url)
        if created.token != token:  # a server that makes tokens itself
            _write_private(profile / TOKEN_NAME, created.token)
        store = LocalStore(profile / DB_NAME)
        store.set_account(account)
        store.keys.set_identity(IdentityKeyPair.generate())
        (profile / SIGNUP_NAME).unlink(missing_ok=True)
        tls.save(profile, config.insecure, config.ca_file)
        client = cls(profile, store, account, created.token, config)
        await client._upload_keys()
        return client

    @classmethod
    async def link_device(
        cls,
        profile: Path,
        server_url: str,
        device_name: str = "linked",
        on_code: Callable[[str], None] | None = None,
        patience: float = LINK_TIMEOUT,
        config: ClientConfig | None = None,
    ) -> Self:
        """Link a new device to an existing account (docs/e2ee.md): ``on_code`` gets the link
        code to approve on a device of the account (:meth:`approve_device`); returns the new
        device's client (not started) once approved. ``device_name`` is the approver's to
        choose on the server; it is kept here only as a default for the user."""
        profile = Path(profile)
        if (profile / TOKEN_NAME).exists():
            raise ClientError("profile_exists", f"{profile} already holds an account")
        _ws_url(server_url)
        config = config or ClientConfig()
        tls.check_url(server_url, config.insecure)
        context = tls.ssl_context(config.ca_file)
        ephemeral = PrivateKey.generate()
        public = ephemeral.public_key().serialize()
        # Chosen before the first request: every step can be repeated after a lost answer
        # and ends in the same device (protocol.keys.NewProvisioning).
        secret, token = secrets.token_urlsafe(32), _new_token()
        http = Rest(server_url, timeout=config.http_timeout, verify=context)
        try:
            request = await retrying(lambda: request_link(http, public, secret, token))
            if on_code is not None:
                on_code(provisioning.link_code(request.id, public))
            try:
                result = await poll_link(http, request, patience)
            except TimeoutError:
                raise ClientError(
                    "link_timeout", "the link code was not approved in time"
                ) from None
        finally:
            await http.aclose()
        try:
            message = provisioning.open_sealed(result.sealed, ephemeral)
        except provisioning.LinkCodeError as exc:
            raise ClientError("bad_link", str(exc)) from None
        if message.account_id != result.account_id:
            raise ClientError("bad_link", "the provisioning message is for another account")
        private_dir(profile)
        account = Account(result.account_id, result.username, result.device_id, server_url)
        token = result.token or token  # empty: the server took the one chosen here
        _write_private(profile / TOKEN_NAME, token)
        tls.save(profile, config.insecure, config.ca_file)
        store = LocalStore(profile / DB_NAME)
        store.set_account(account)
        store.keys.set_identity(IdentityKeyPair.deserialize(message.identity))
        client = cls(profile, store, account, token, config)
        try:
            await client._upload_keys(first_link=True)
        except ServerRefused as exc:
            # The identity key we were given is not the account's: this device could never
            # publish keys (nobody could write to it). Fail the link and leave no profile.
            await client.close()
            _remove_profile_files(profile)
            raise ClientError(
                "bad_link",
                "the identity key from the approving device is not the account's"
                f" (the server refused the key upload: {exc.code})",
            ) from None
        if message.vault_key is not None and message.vault_wrapped is not None:
            await client._adopt_vault(message.vault_key, message.vault_wrapped)
        return client

    async def approve_device(self, code: str, device_name: str = "linked") -> int:
        """Approve a new device of this account from its link code; returns its device id.
        The account's identity key travels sealed to the new device (the server cannot read
        it)."""
        self._check_open()
        try:
            provisioning_id, ephemeral = provisioning.parse_link_code(code)
            message = provisioning.ProvisionMessage(
                account_id=self.account.account_id,
                username=self.account.username,
                identity=self._store.keys.get_identity_key_pair().serialize(),
                vault_key=self._backup.keys.vault_key if self._backup.keys else None,
                vault_wrapped=self._backup.keys.wrapped if self._backup.keys else None,
            )
            sealed = provisioning.seal(message, ephemeral)
        except provisioning.LinkCodeError as exc:
            raise ClientError("bad_link", str(exc)) from None
        body = wire.ApproveDevice(device_name=device_name, ephemeral_key=ephemeral, sealed=sealed)
        # A repeated approval with the same sealed message answers the same device.
        approved = await retrying(lambda: approve_link(self._rest, provisioning_id, body))
        return approved.device_id

    async def remove_device(self, device_id: int) -> None:
        """Remove another device of this account (``DELETE /v1/devices/{id}``): its token
        stops working and its connection ends (close code 4401)."""
        self._check_open()
        await self._rest.send(routes.REMOVE_DEVICE, device_id=device_id)

    async def _upload_keys(self, first_link: bool = False) -> None:
        """Publish this device's keys if the server has none, refill one-time prekeys and
        rotate the signed prekey when due (after account creation and every sync). A failure
        is logged and tried again after the next sync, except the first upload of a linked
        device (``first_link``) refused as a ``conflict`` (its identity key differs from the
        account's): that :class:`ServerRefused` is raised."""
        keys = self._store.keys
        try:
            async with self._key_upload:
                counts = await self._rest.call(routes.KEY_COUNTS, wire.KeyCounts)
                if counts.signed_prekey_id is None:
                    counts = await self._rest.call(
                        routes.UPLOAD_KEYS, wire.KeyCounts, keys.initial_upload()
                    )
                upload = keys.maintenance_upload(counts)
                if upload is not None:
                    await self._rest.call(routes.UPLOAD_KEYS, wire.KeyCounts, upload)
        except ClientError as exc:
            if first_link and isinstance(exc, ServerRefused) and exc.code == ErrorCode.CONFLICT:
                raise
            log.info("uploading keys failed (%s); trying again after the next sync", exc.code)

    @classmethod
    async def open(cls, profile: Path, config: ClientConfig | None = None) -> Self:
        """Open an existing profile. Raises :class:`ProfileNotFound` if it holds no account,
        :class:`ProfileCorrupt` if its database is damaged (the message says what to run)."""
        profile = Path(profile)
        token_path = profile / TOKEN_NAME
        if not (profile / DB_NAME).exists() or not token_path.exists():
            raise ProfileNotFound(f"no account in {profile}")
        lock = profilelock.acquire(profile)  # ProfileInUse; before migrations touch the store
        try:
            # the full integrity check runs beside the app's start (client/integrity.py)
            store = LocalStore(profile / DB_NAME, integrity="later")
            integrity.check_in_background(profile / DB_NAME)
            account = store.account()
            if account is None:
                store.close()
                raise ProfileNotFound(f"no account in {profile}")
            if not store.keys.has_identity():  # a profile from before end-to-end encryption
                store.keys.set_identity(IdentityKeyPair.generate())
            return cls(profile, store, account, token_path.read_text().strip(), config)
        finally:
            lock.release()  # the client holds its own reference


def _remove_profile_files(profile: Path) -> None:
    """Take back the token and the database a failed link or sign-up wrote (the directory
    stays)."""
    for name in (TOKEN_NAME, SIGNUP_NAME, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (profile / name).unlink(missing_ok=True)


def _pending_signup(profile: Path, server_url: str, username: str) -> str | None:
    """The token of a sign-up of ``username`` at ``server_url`` that was started in
    ``profile`` and never finished (its answer was lost), to repeat it with; None for a
    fresh profile. Raises ``profile_exists`` for a profile that holds something else."""
    token_path = profile / TOKEN_NAME
    if not token_path.exists():
        return None
    try:
        signup = json.loads((profile / SIGNUP_NAME).read_text())
    except (OSError, ValueError):
        signup = None
    if signup != {"server_url": server_url, "username": username}:
        raise ClientError("profile_exists", f"{profile} already holds an account")
    return token_path.read_text().strip()
