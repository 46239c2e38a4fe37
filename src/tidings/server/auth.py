"""Device tokens: making them and checking ``Authorization: Bearer <token>``.

A token is ``<key>.<secret>``: the key (96 random bits) finds the device row without touching
the secret; the secret (256 random bits) is stored only as its SHA-256 and compared in constant
time. Neither part is ever logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

from tidings.server.delivery import Device
from tidings.server.store import DeviceRecord, Store

_KEY_BYTES = 12
_SECRET_BYTES = 32
#: Cached devices (with only the hash of their token); cleared whole when full.
_CACHE_SIZE = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class NewToken:
    token: str
    key: str
    secret_hash: bytes


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def new_token() -> NewToken:
    key = secrets.token_urlsafe(_KEY_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewToken(token=f"{key}.{secret}", key=key, secret_hash=secret_hash(secret))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header value, if it is one."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Authenticator:
    def __init__(self, store: Store) -> None:
        self._store = store
        #: token key -> (hash of the token's secret, the device it proves)
        self._devices: dict[str, tuple[bytes, Device]] = {}
        #: bumped by :meth:`forget`, so a lookup that raced with a removal is not cached
        self._generation = 0
        #: accounts an operator disabled or removed (tidings admin): their tokens are refused
        self.inactive: set[str] = set()

    def forget(self, account_id: str, device_id: int) -> None:
        """Drop a removed device from the cache: its token is refused from now on."""
        self._generation += 1
        stale = [
            key
            for key, (_, device) in self._devices.items()
            if device.device_id == device_id and device.account_id == account_id
        ]
        for key in stale:
            del self._devices[key]

    async def device(self, authorization: str | None) -> Device | None:
        """The device an Authorization header value proves to be, or ``None``."""
        token = bearer_token(authorization)
        if token is None or len(token) > 256:
            return None
        key, dot, secret = token.partition(".")
        if not dot or not key or not secret or not secret.isascii():
            return None
        cached = self._devices.get(key)
        if cached is None:
            generation = self._generation
            record = await self._store.device_by_token_key(key)
            if record is None:
                return None
            cached = (record.token_hash, _device(record))
            if generation != self._generation:
                # A device was removed meanwhile, perhaps this one: ask the store again.
                if await self._store.device_by_token_key(key) is None:
                    return None
            else:
                if len(self._devices) >= _CACHE_SIZE:
                    self._devices.clear()
                self._devices[key] = cached
        token_hash, device = cached
        if not hmac.compare_digest(token_hash, secret_hash(secret)):
            return None
        if device.account_id in self.inactive:
            return None
        return device


def _device(record: DeviceRecord) -> Device:
    return Device(
        account_id=record.account_id,
        device_id=record.device_id,
        username=record.username,
        device_name=record.device_name,
    )
