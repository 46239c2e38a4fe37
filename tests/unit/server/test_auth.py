"""Device tokens: shape, hashing, and constant-time checking."""

from __future__ import annotations

import hashlib

from tidings.server.auth import Authenticator, bearer_token, new_token
from tidings.server.bus.local import LocalBus

from .conftest import Recorder


def test_token_has_a_lookup_key_and_a_256_bit_secret():
    token = new_token()
    key, dot, secret = token.token.partition(".")
    assert dot and key == token.key
    assert len(secret) == 43  # 32 bytes, base64url without padding
    assert token.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret.encode() not in token.secret_hash
    assert new_token().token != token.token


def test_bearer_parsing():
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer   abc.def ") == "abc.def"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


async def test_authenticator(world):
    token = new_token()
    await world.store.create_account(
        account_id="a1",
        username="alice",
        device_name="phone",
        token_key=token.key,
        token_hash=token.secret_hash,
        now=0,
    )
    auth = Authenticator(world.store)
    device = await auth.device(f"Bearer {token.token}")
    assert device is not None
    assert (device.account_id, device.device_id, device.username) == ("a1", 1, "alice")
    assert await auth.device(f"Bearer {token.key}.{'x' * 43}") is None
    assert await auth.device(f"Bearer other.{token.token.partition('.')[2]}") is None
    assert await auth.device("Bearer nodot") is None
    assert await auth.device(f"Bearer {token.key}.é") is None
    # The cached row is checked again every time.
    assert await auth.device(f"Bearer {token.key}.{'y' * 43}") is None
    assert await auth.device(f"Bearer {token.token}") is not None


async def test_forget_drops_a_cached_device(world):
    token = new_token()
    await world.store.create_account(
        account_id="a1",
        username="alice",
        device_name="phone",
        token_key=token.key,
        token_hash=token.secret_hash,
        now=0,
    )
    auth = Authenticator(world.store)
    assert await auth.device(f"Bearer {token.token}") is not None
    await world.store.remove_device("a1", 1)
    assert await auth.device(f"Bearer {token.token}") is not None  # still cached
    auth.forget("a1", 1)
    assert await auth.device(f"Bearer {token.token}") is None


async def test_bus_revoke_closes_only_that_device():
    phone, laptop = Recorder("a1", 1), Recorder("a1", 2)
    bus = LocalBus()
    await bus.attach(phone)
    await bus.attach(laptop)
    await bus.revoke("a1", 2)
    await bus.revoke("a1", 7)  # not connected: nothing happens
    assert laptop.was_revoked and not phone.was_revoked
    assert bus.online("a1") == 1
    await bus.detach(laptop)  # the closing connection detaches later: a no-op
    assert bus.online("a1") == 1
