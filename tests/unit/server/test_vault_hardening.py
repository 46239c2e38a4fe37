"""Adversarial cases of the vault service: a spent recovery ticket answers a retry only for
the very same token, not for anybody who knows the ticket and the token's public key part."""

from __future__ import annotations

import pytest

from tidings.protocol import ErrorCode
from tidings.protocol import vault as wire
from tidings.server.auth import new_token
from tidings.server.domain import Refused
from tidings.server.vault.service import VaultService

from .conftest import World
from .test_vault_service import RIGHT, Clock, enrolled, service


async def test_a_spent_ticket_is_not_answered_for_a_token_with_another_secret(
    world: World,
) -> None:
    vault: VaultService = service(world, Clock())
    await enrolled(world, vault)
    ticket = (await vault.recover("a", wire.VaultProof("alice", RIGHT))).ticket
    token = new_token().token
    first = await vault.register(wire.RecoverDevice(ticket, token, "phone"))
    # The same token key with another secret is not a retry of that registration.
    key = token.partition(".")[0]
    forged = key + "." + new_token().token.partition(".")[2]
    with pytest.raises(Refused) as caught:
        await vault.register(wire.RecoverDevice(ticket, forged, "phone"))
    assert caught.value.code == ErrorCode.CONFLICT
    # The real retry still gets its answer.
    again = await vault.register(wire.RecoverDevice(ticket, token, "phone"))
    assert again.device_id == first.device_id


async def test_the_number_of_pages_is_bounded_not_only_their_bytes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidings.server.store.postgres import vault as postgres_vault
    from tidings.server.store.sqlite import vault as sqlite_vault

    monkeypatch.setattr(sqlite_vault, "MAX_PAGES_PER_ACCOUNT", 3, raising=False)
    monkeypatch.setattr(postgres_vault, "MAX_PAGES_PER_ACCOUNT", 3, raising=False)
    vault = service(world, Clock(), quota=1_000_000)
    account_id = await enrolled(world, vault)
    pages = [wire.VaultPage(f"p{i}", 1, b"x") for i in range(3)]
    assert (await vault.put_pages(account_id, wire.VaultPages(pages))).pages == 3
    with pytest.raises(Refused) as caught:
        await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("p3", 1, b"x")]))
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert (await vault.status(account_id)).pages == 3  # nothing changed on the refusal
    # replacing a page keeps the count: still fine at the cap
    status = await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("p0", 2, b"y")]))
    assert status.pages == 3
