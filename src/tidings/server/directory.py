"""The key directory and device linking (docs/e2ee.md, :mod:`tidings.protocol.keys`).

The server stores public key material only and checks its shape (sizes by the schemas, type
bytes here); it never imports the crypto library, so signatures are the clients' to verify.
Provisioning secrets are kept as SHA-256 and compared in constant time; nothing here logs a
key, a token, a secret or a sealed message.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tidings.protocol import ErrorCode
from tidings.protocol.keys import (
    ApprovedDevice,
    ApproveDevice,
    KeyCounts,
    KeyUpload,
    PreKeyBundles,
    ProvisionedDevice,
    Provisioning,
)
from tidings.server.auth import bearer_token, new_token, secret_hash
from tidings.server.delivery import Device, new_id, now_ms
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import NewDeviceLink, Refused, Store

#: libsignal's key type bytes
CURVE_TYPE = 0x05
KYBER_TYPE = 0x08
_SECRET_BYTES = 32


def check_key(key: bytes, type_byte: int, what: str) -> None:
    """Refuse (BAD_FRAME) a serialized public key of the wrong type."""
    if not key or key[0] != type_byte:
        raise Refused(ErrorCode.BAD_FRAME, f"{what}: expected key type 0x{type_byte:02x}")


def check_upload(upload: KeyUpload) -> None:
    check_key(upload.identity_key, CURVE_TYPE, "identity_key")
    if upload.signed_prekey is not None:
        check_key(upload.signed_prekey.key, CURVE_TYPE, "signed_prekey")
    if upload.kyber_last_resort is not None:
        check_key(upload.kyber_last_resort.key, KYBER_TYPE, "kyber_last_resort")
    for prekey in upload.prekeys:
        check_key(prekey.key, CURVE_TYPE, "prekeys")
    for kyber in upload.kyber_prekeys:
        check_key(kyber.key, KYBER_TYPE, "kyber_prekeys")
    for what, keys in (("prekeys", upload.prekeys), ("kyber_prekeys", upload.kyber_prekeys)):
        if len({k.id for k in keys}) != len(keys):
            raise Refused(ErrorCode.BAD_FRAME, f"{what}: duplicate key ids")


class KeyDirectory:
    """Uploads, counts and claims of prekey bundles; claims are rate-limited per account."""

    def __init__(
        self,
        store: Store,
        *,
        claims_per_minute: int,
        clock: Callable[[], int] = now_ms,
        limiter_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self.limiter = RateLimiter(claims_per_minute, clock=limiter_clock)
        #: called with (account id, device ids) after devices were removed
        self.on_removed: Callable[[str, list[int]], Awaitable[None]] | None = None

    async def upload(self, device: Device, upload: KeyUpload) -> KeyCounts:
        """Store the upload; a replaced identity removes the account's other devices, which
        are then handed to ``on_removed`` (to forget their tokens and close connections)."""
        check_upload(upload)
        dropped: list[int] = []
        counts = await self._store.upload_keys(
            device.account_id, device.device_id, upload, self._clock(), dropped=dropped
        )
        if dropped and self.on_removed is not None:
            await self.on_removed(device.account_id, dropped)
        return counts

    async def remove_device(self, device: Device, device_id: int) -> None:
        """DELETE /v1/devices/{device_id}: ``device`` removes another device of its account.
        Raises FORBIDDEN for itself, NOT_FOUND for a device its account does not have."""
        if device_id == device.device_id:
            raise Refused(ErrorCode.FORBIDDEN, "a device cannot remove itself")
        if not await self._store.remove_device(device.account_id, device_id):
            raise Refused(ErrorCode.NOT_FOUND, "no such device")
        if self.on_removed is not None:
            await self.on_removed(device.account_id, [device_id])

    async def counts(self, device: Device) -> KeyCounts:
        return await self._store.key_counts(device.account_id, device.device_id)

    async def bundles(
        self, device: Device, account_id: str, device_id: int | None
    ) -> PreKeyBundles:
        """One account's bundles (one device's with ``device_id``). Raises NOT_FOUND if it has
        no device with keys (other than the asking one), RATE_LIMITED."""
        found = await self.claim(device, {account_id: [device_id] if device_id else []})
        if not found:
            raise Refused(ErrorCode.NOT_FOUND, "no device with keys")
        return found[0]

    async def claim(
        self, device: Device, wanted: Mapping[str, Sequence[int]]
    ) -> list[PreKeyBundles]:
        """Bundles of several accounts at once. The cost is one token per device named (one
        per account asked for all of its devices) up front, and the rest of the devices
        actually claimed afterwards."""
        estimate = sum(max(1, len(devices)) for devices in wanted.values()) or 1
        if not self.limiter.allow(device.account_id, estimate):
            raise Refused(ErrorCode.RATE_LIMITED, "too many key claims; try again later")
        bundles = await self._store.claim_keys(device.address, wanted)
        self.limiter.charge(device.account_id, sum(len(b.devices) for b in bundles) - estimate)
        return bundles


class Provisioner:
    """Linking a new device to an account (docs/e2ee.md, "Linked devices")."""

    def __init__(
        self,
        store: Store,
        *,
        per_minute: int,
        ttl_seconds: int,
        max_devices: int,
        clock: Callable[[], int] = now_ms,
        limiter_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl_seconds * 1000
        self._max_devices = max_devices
        self.limiter = RateLimiter(per_minute, clock=limiter_clock)

    async def create(
        self,
        client: str,
        ephemeral_key: bytes,
        secret: str | None = None,
        token: str | None = None,
    ) -> Provisioning:
        """A new request from an unauthenticated client (``client``: its IP address). With
        ``secret`` and ``token`` chosen by the client a retry answers the same request."""
        if not self.limiter.allow(client):
            raise Refused(ErrorCode.RATE_LIMITED, "too many provisioning requests")
        check_key(ephemeral_key, CURVE_TYPE, "ephemeral_key")
        provisioning_id = new_id("p")
        if secret is not None and token is not None:
            token_key, _, token_secret = token.partition(".")
            found_id, expires_at = await self._store.create_provisioning_once(
                provisioning_id,
                secret_hash(secret),
                ephemeral_key,
                (token_key, secret_hash(token_secret)),
                self._clock(),
                self._ttl,
            )
            return Provisioning(id=found_id, secret=secret, expires_at=expires_at)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = self._clock()
        await self._store.create_provisioning(
            provisioning_id, secret_hash(secret), ephemeral_key, now, self._ttl
        )
        return Provisioning(id=provisioning_id, secret=secret, expires_at=now + self._ttl)

    async def approve(
        self, device: Device, provisioning_id: str, body: ApproveDevice
    ) -> ApprovedDevice:
        check_key(body.ephemeral_key, CURVE_TYPE, "ephemeral_key")
        # The device exists from now on, but its token is unusable until the new device
        # fetches the result and gets a fresh one: no secret is kept in between.
        placeholder = new_token()
        device_id = await self._store.approve_provisioning(
            NewDeviceLink(
                provisioning_id=provisioning_id,
                account_id=device.account_id,
                device_name=body.device_name,
                ephemeral_key=body.ephemeral_key,
                sealed=body.sealed,
                placeholder_key=placeholder.key,
                placeholder_hash=placeholder.secret_hash,
                max_devices=self._max_devices,
                now=self._clock(),
            )
        )
        return ApprovedDevice(account_id=device.account_id, device_id=device_id)

    async def fetch(self, provisioning_id: str, authorization: str | None) -> ProvisionedDevice:
        """The result for the new device, once; raises UNAUTHORIZED, NOT_FOUND, EXPIRED or
        PENDING."""
        secret = bearer_token(authorization)
        if secret is None or len(secret) > 256 or not secret.isascii():
            raise Refused(ErrorCode.UNAUTHORIZED, "missing or invalid provisioning secret")
        token = new_token()
        linked = await self._store.fetch_provisioning(
            provisioning_id, secret_hash(secret), token.key, token.secret_hash, self._clock()
        )
        # A device that chose its token (NewProvisioning.token) kept it: the one made here
        # was not stored, and none goes back.
        return ProvisionedDevice(
            account_id=linked.account_id,
            username=linked.username,
            device_id=linked.device_id,
            token=token.token if linked.token_made else "",
            sealed=linked.sealed,
        )
