"""The vault service on a real store: backoff of failed proofs, page generations, the quota,
one-time recovery tickets, fake params for unknown usernames, and reset."""

from __future__ import annotations

import pytest

from tidings.crypto.vault import KdfParams
from tidings.protocol import ErrorCode
from tidings.protocol import vault as wire
from tidings.server.auth import new_token
from tidings.server.domain import Refused
from tidings.server.vault.attempts import Backoff
from tidings.server.vault.keys import VaultKeys
from tidings.server.vault.service import TICKET_TTL_MS, VaultService

from .conftest import World

KEYS = VaultKeys(b"p" * 32, b"f" * 32)
RIGHT = b"r" * 32
WRONG = b"w" * 32
PARAMS = KdfParams(64 * 1024, 3, 1, b"s" * 16).encode()
HOUR = 3_600_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def service(world: World, clock: Clock, *, quota: int = 0) -> VaultService:
    return VaultService(
        world.store,  # type: ignore[arg-type]  # the SQLite store implements VaultStore
        KEYS, quota_bytes=quota, max_devices=10, backoff=Backoff(free=5, cap=60), clock=clock,
    )  # fmt: skip


async def enrolled(world: World, vault: VaultService, username: str = "alice") -> str:
    device = await world.account(username)
    await vault.enrol(device.account_id, wire.VaultEnrol(b"wrapped", PARAMS, RIGHT))
    return device.account_id


async def refused(code: ErrorCode, call: object) -> Refused:
    with pytest.raises(Refused) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code == code, caught.value.message
    return caught.value


# ---------------------------------------------------------------------- backoff arithmetic


def test_backoff_free_attempts_then_doubling_up_to_the_cap() -> None:
    backoff = Backoff(free=5, base=1.0, cap=900.0)
    # the first `free` attempts are never blocked: failures 1..4 block nothing, the 5th blocks
    # the 6th attempt for 1 s, then 2 s, 4 s, ...
    assert [backoff.delay_ms(n) for n in range(0, 5)] == [0] * 5
    assert [backoff.delay_ms(n) for n in range(5, 10)] == [1000, 2000, 4000, 8000, 16000]
    assert backoff.delay_ms(14) == 512_000
    assert backoff.delay_ms(15) == 900_000  # 1024 s capped
    assert backoff.delay_ms(200) == 900_000  # no overflow, still the cap


def test_backoff_counts_reset_after_a_quiet_day_and_on_success() -> None:
    backoff = Backoff(free=2, base=1.0, cap=10.0)
    now = 5_000_000
    assert backoff.fail("k", now) == 1
    assert backoff.blocked("k", now) == 0
    assert backoff.fail("k", now) == 2
    assert backoff.blocked("k", now) == 1000
    assert backoff.blocked("k", now + 400) == 600
    assert backoff.fail("k", now + 1000) == 3
    assert backoff.blocked("k", now + 1000) == 2000
    # 24 h without a failure: forgotten
    later = now + 1000 + 86_400_000 + 1
    assert backoff.current(3, now + 1000, later) == 0
    assert backoff.blocked("k", later) == 0
    assert backoff.fail("k", later) == 1
    backoff.fail("k", later)
    backoff.succeed("k")
    assert backoff.blocked("k", later) == 0
    assert backoff.fail("k", later) == 1


# ---------------------------------------------------------------------- proofs with backoff


async def test_failed_proofs_are_slowed_per_account_and_a_success_resets(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)
    account_id = await enrolled(world, vault)
    for i in range(5):
        # a different address each time: only the account's count grows
        await refused(
            ErrorCode.FORBIDDEN, vault.recover(f"10.0.0.{i}", wire.VaultProof("alice", WRONG))
        )
    limited = await refused(
        ErrorCode.RATE_LIMITED, vault.recover("10.0.1.1", wire.VaultProof("alice", RIGHT))
    )
    assert "1 s" in limited.message
    clock.now += 1001
    await refused(ErrorCode.FORBIDDEN, vault.recover("10.0.1.2", wire.VaultProof("alice", WRONG)))
    record = await world.store.vault_key(account_id)  # type: ignore[attr-defined]
    assert record.failures == 6
    assert record.blocked_until == clock.now + 2000
    clock.now += 1500
    await refused(
        ErrorCode.RATE_LIMITED, vault.recover("10.0.1.3", wire.VaultProof("alice", RIGHT))
    )
    clock.now += 501
    recovered = await vault.recover("10.0.1.4", wire.VaultProof("alice", RIGHT))
    assert recovered.account_id == account_id and recovered.wrapped == b"wrapped"
    record = await world.store.vault_key(account_id)  # type: ignore[attr-defined]
    assert (record.failures, record.blocked_until) == (0, 0)
    # the count starts again from nothing: five free failures
    for _ in range(5):
        await refused(
            ErrorCode.FORBIDDEN, vault.recover("10.0.2.1", wire.VaultProof("alice", WRONG))
        )


async def test_the_account_count_is_forgotten_after_24_hours(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)
    account_id = await enrolled(world, vault)
    await world.store.vault_failure(account_id, 30, clock.now + 60_000, clock.now)  # type: ignore[attr-defined]
    await refused(ErrorCode.RATE_LIMITED, vault.recover("a", wire.VaultProof("alice", RIGHT)))
    clock.now += 24 * HOUR + 1
    await refused(ErrorCode.FORBIDDEN, vault.recover("a", wire.VaultProof("alice", WRONG)))
    record = await world.store.vault_key(account_id)  # type: ignore[attr-defined]
    assert record.failures == 1  # counted from zero again, not 31
    assert record.blocked_until == clock.now  # one failure: no wait


async def test_the_backoff_is_capped(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)  # cap 60 s
    account_id = await enrolled(world, vault)
    for _ in range(12):
        await refused(ErrorCode.FORBIDDEN, vault.recover("x", wire.VaultProof("alice", WRONG)))
        record = await world.store.vault_key(account_id)  # type: ignore[attr-defined]
        clock.now = max(clock.now, record.blocked_until) + 1
    record = await world.store.vault_key(account_id)  # type: ignore[attr-defined]
    assert record.failures == 12
    assert record.blocked_until - record.last_failure == 60_000


async def test_an_address_is_slowed_across_usernames(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)  # per address: 4 x 5 = 20 free
    for i in range(20):
        await refused(
            ErrorCode.FORBIDDEN, vault.recover("1.2.3.4", wire.VaultProof(f"u{i}", WRONG))
        )
    await refused(ErrorCode.RATE_LIMITED, vault.recover("1.2.3.4", wire.VaultProof("v", WRONG)))
    await refused(ErrorCode.FORBIDDEN, vault.recover("5.6.7.8", wire.VaultProof("v", WRONG)))


async def test_a_passphrase_change_needs_the_old_proof_and_counts_failures(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)
    account_id = await enrolled(world, vault)
    change = wire.ChangePassphrase(WRONG, b"new", PARAMS, b"n" * 32)
    await refused(ErrorCode.FORBIDDEN, vault.change_passphrase(account_id, change))
    assert (await world.store.vault_key(account_id)).failures == 1  # type: ignore[attr-defined]
    good = wire.ChangePassphrase(RIGHT, b"new", PARAMS, b"n" * 32)
    await vault.change_passphrase(account_id, good)
    await refused(ErrorCode.FORBIDDEN, vault.recover("a", wire.VaultProof("alice", RIGHT)))
    assert (await vault.recover("a", wire.VaultProof("alice", b"n" * 32))).wrapped == b"new"


# ---------------------------------------------------------------------- enrolment and pages


async def test_enrolment_is_once_and_a_repeat_of_the_same_is_fine(world: World) -> None:
    vault = service(world, Clock())
    account_id = await enrolled(world, vault)
    status = await vault.enrol(account_id, wire.VaultEnrol(b"wrapped", PARAMS, RIGHT))
    assert status.enrolled
    await refused(
        ErrorCode.CONFLICT, vault.enrol(account_id, wire.VaultEnrol(b"other", PARAMS, RIGHT))
    )


async def test_an_older_generation_is_refused_and_an_upload_is_all_or_nothing(
    world: World,
) -> None:
    vault = service(world, Clock())
    account_id = await enrolled(world, vault)
    await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("h/c/0", 2, b"two")]))
    # the same upload again (its answer was lost): fine
    await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("h/c/0", 2, b"two")]))
    await refused(
        ErrorCode.CONFLICT,
        vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("h/c/0", 2, b"changed")])),
    )
    stale = wire.VaultPages(
        [wire.VaultPage("h/c/1", 1, b"new"), wire.VaultPage("h/c/0", 1, b"one")]
    )
    await refused(ErrorCode.CONFLICT, vault.put_pages(account_id, stale))
    listing = await vault.list_pages(account_id)
    assert [(p.id, p.generation) for p in listing.pages] == [("h/c/0", 2)]  # h/c/1 not kept
    await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("h/c/0", 3, b"three")]))
    fetched = await vault.fetch_pages(account_id, wire.FetchPages(["h/c/0", "missing"]))
    assert [(p.id, p.generation, p.sealed) for p in fetched] == [("h/c/0", 3, b"three")]
    await refused(
        ErrorCode.BAD_FRAME,
        vault.put_pages(
            account_id,
            wire.VaultPages([wire.VaultPage("h/c/2", 1, b"a"), wire.VaultPage("h/c/2", 2, b"b")]),
        ),
    )


async def test_pages_need_an_enrolment_and_fit_the_quota(world: World) -> None:
    vault = service(world, Clock(), quota=100)
    bob = await world.account("bob")
    await refused(
        ErrorCode.NOT_FOUND,
        vault.put_pages(bob.account_id, wire.VaultPages([wire.VaultPage("p", 1, b"x")])),
    )
    account_id = await enrolled(world, vault)
    status = await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("a", 1, b"x" * 60)]))
    assert (status.pages, status.bytes, status.quota) == (1, 60, 100)
    await refused(
        ErrorCode.QUOTA_EXCEEDED,
        vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("b", 1, b"y" * 60)])),
    )
    # replacing a page counts its new size only
    status = await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("a", 2, b"z" * 90)]))
    assert (status.pages, status.bytes) == (1, 90)
    assert (await vault.status(account_id)).bytes == 90


# ---------------------------------------------------------------------- tickets


async def test_a_ticket_registers_one_device_and_a_repeat_gets_the_same(world: World) -> None:
    clock = Clock()
    vault = service(world, clock)
    account_id = await enrolled(world, vault)
    ticket = (await vault.recover("a", wire.VaultProof("alice", RIGHT))).ticket
    token = new_token().token
    first = await vault.register(wire.RecoverDevice(ticket, token, "phone"))
    assert (first.account_id, first.username, first.device_id) == (account_id, "alice", 2)
    again = await vault.register(wire.RecoverDevice(ticket, token, "phone"))
    assert again.device_id == first.device_id
    await refused(ErrorCode.CONFLICT, vault.register(wire.RecoverDevice(ticket, new_token().token)))
    await refused(
        ErrorCode.NOT_FOUND, vault.register(wire.RecoverDevice("x" * 43, new_token().token))
    )
    late = (await vault.recover("a", wire.VaultProof("alice", RIGHT))).ticket
    clock.now += TICKET_TTL_MS
    await refused(ErrorCode.EXPIRED, vault.register(wire.RecoverDevice(late, new_token().token)))


# ---------------------------------------------------------------------- params


async def test_fake_params_are_deterministic_and_shaped_like_real_ones(world: World) -> None:
    vault = service(world, Clock())
    await enrolled(world, vault)
    await world.account("carol")  # an account without a vault answers like no account
    real = (await vault.params("alice")).params
    assert real == PARAMS
    fakes = [(await vault.params(name)).params for name in ("nobody", "nobody", "carol")]
    assert fakes[0] == fakes[1]
    assert fakes[0] != fakes[2]
    assert len({len(real), *map(len, fakes)}) == 1
    decoded_real, decoded_fake = KdfParams.decode(real), KdfParams.decode(fakes[0])
    shape = (decoded_fake.version, decoded_fake.m_cost_kib, decoded_fake.t_cost)
    assert shape == (decoded_real.version, decoded_real.m_cost_kib, decoded_real.t_cost)
    assert decoded_fake.parallelism == decoded_real.parallelism
    assert len(decoded_fake.salt) == 16
    # the same server secret gives the same fake salt (every node, every restart); another not
    assert VaultKeys(b"q" * 32, b"f" * 32).fake_params("nobody") == fakes[0]
    assert VaultKeys(b"p" * 32, b"g" * 32).fake_params("nobody") != fakes[0]


# ---------------------------------------------------------------------- reset


async def test_reset_deletes_the_enrolment_pages_and_tickets(world: World) -> None:
    vault = service(world, Clock())
    account_id = await enrolled(world, vault)
    await vault.put_pages(account_id, wire.VaultPages([wire.VaultPage("h/c/0", 1, b"x")]))
    ticket = (await vault.recover("a", wire.VaultProof("alice", RIGHT))).ticket
    status = await vault.reset(account_id)
    assert not status.enrolled
    assert await world.count("vault_pages", account_id=account_id) == 0
    await refused(
        ErrorCode.NOT_FOUND, vault.register(wire.RecoverDevice(ticket, new_token().token))
    )
    await refused(ErrorCode.FORBIDDEN, vault.recover("a", wire.VaultProof("alice", RIGHT)))
    # a new enrolment under another passphrase starts again at nothing
    await vault.enrol(account_id, wire.VaultEnrol(b"other", PARAMS, WRONG))
    assert (await vault.list_pages(account_id)).pages == []
    assert (await vault.reset(account_id)).enrolled is False
    assert (await vault.reset(account_id)).enrolled is False  # nothing to delete: fine
