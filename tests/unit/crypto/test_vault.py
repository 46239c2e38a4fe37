"""The history vault's keys: Argon2id params, credential, wrapped key, sealed pages."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.crypto import vault
from tidings.crypto.errors import SignalProtocolError
from tidings.crypto.vault import (
    KdfLimits,
    KdfParams,
    StalePage,
    TamperedPage,
    VaultError,
    VaultFormatError,
    WeakPassphrase,
    WrongPassphrase,
    change_passphrase,
    derive_vault_secrets,
    enrol,
    new_kdf_params,
    new_vault_key,
    open_page,
    recover_vault_key,
    seal_page,
    sealed_page_generation,
    unwrap_vault_key,
    wrap_vault_key,
    wrapped_key_params,
)

# Small Argon2id params through the very same code path: m = 8 MiB, t = 1.
FAST = KdfLimits(min_m_cost_kib=8 * 1024, min_t_cost=1)
PASS = "correct horse battery staple"
ACCOUNT = "a1b2c3"


def fast_params() -> KdfParams:
    return new_kdf_params(m_cost_kib=8 * 1024, t_cost=1)


def fast_enrol(passphrase: str = PASS, account: str = ACCOUNT) -> vault.Enrolment:
    return enrol(passphrase, account, params=fast_params(), limits=FAST)


def flips(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            out.append(bytes(flipped))
    return out


# --- params -----------------------------------------------------------------------------------


def test_defaults_meet_the_production_floor() -> None:
    params = new_kdf_params()
    assert (params.m_cost_kib, params.t_cost, params.parallelism) == (64 * 1024, 3, 1)
    params.check(vault.PRODUCTION_LIMITS)
    assert len(params.salt) == 16
    assert new_kdf_params().salt != params.salt


def test_params_round_trip_and_reject_bad_lengths() -> None:
    params = fast_params()
    assert KdfParams.decode(params.encode()) == params
    assert len(params.encode()) == 26
    with pytest.raises(VaultFormatError):
        KdfParams.decode(params.encode()[:-1])


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(8 * 1024, 3, 1, bytes(16)),  # memory below the floor
        KdfParams(64 * 1024, 1, 1, bytes(16)),  # passes below the floor
        KdfParams(4 * 1024 * 1024, 3, 1, bytes(16)),  # 4 GiB: a denial of service
        KdfParams(64 * 1024, 100, 1, bytes(16)),
        KdfParams(64 * 1024, 3, 0, bytes(16)),
        KdfParams(64 * 1024, 3, 64, bytes(16)),
        KdfParams(64 * 1024, 3, 1, bytes(15)),
        KdfParams(64 * 1024, 3, 1, bytes(16), version=2),
    ],
)
def test_params_out_of_limits_are_refused_before_argon2_runs(
    params: KdfParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("Argon2id ran on refused params")

    monkeypatch.setattr(vault, "hash_secret_raw", forbidden)
    with pytest.raises(VaultFormatError):
        derive_vault_secrets(PASS, params)


def test_a_server_cannot_downgrade_a_recovery_to_cheap_params() -> None:
    weak = enrol(PASS, ACCOUNT, params=fast_params(), limits=FAST)
    with pytest.raises(VaultFormatError):
        recover_vault_key(PASS, ACCOUNT, weak.wrapped)  # production limits


# --- credential and wrapping key ----------------------------------------------------------------


def test_the_credential_is_deterministic_per_passphrase_and_salt() -> None:
    params = fast_params()
    one = derive_vault_secrets(PASS, params, limits=FAST)
    two = derive_vault_secrets(PASS, params, limits=FAST)
    assert one == two
    assert len(one.credential) == len(one.wrapping_key) == 32
    assert one.credential != one.wrapping_key
    other_salt = derive_vault_secrets(PASS, fast_params(), limits=FAST)
    assert other_salt.credential != one.credential
    assert other_salt.wrapping_key != one.wrapping_key
    other_pass = derive_vault_secrets(PASS + "!", params, limits=FAST)
    assert other_pass.credential != one.credential
    costlier = KdfParams(params.m_cost_kib, 2, 1, params.salt)
    assert derive_vault_secrets(PASS, costlier, limits=FAST).credential != one.credential


def test_passphrases_are_nfc_normalized() -> None:
    params = fast_params()
    composed = unicodedata.normalize("NFC", "crème brûlée à la carte")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    one = derive_vault_secrets(composed, params, limits=FAST)
    assert derive_vault_secrets(decomposed, params, limits=FAST) == one


def test_secrets_stay_out_of_reprs() -> None:
    enrolment = fast_enrol()
    derived = derive_vault_secrets(PASS, enrolment.params, limits=FAST)
    for text in (repr(enrolment), repr(derived)):
        assert enrolment.vault_key.hex() not in text
        assert derived.credential.hex() not in text
        assert repr(derived.credential) not in text


# --- wrap / unwrap ------------------------------------------------------------------------------


def test_enrol_then_recover_with_the_passphrase_alone() -> None:
    enrolment = fast_enrol()
    assert len(enrolment.wrapped) == 91
    assert wrapped_key_params(enrolment.wrapped) == enrolment.params
    assert recover_vault_key(PASS, ACCOUNT, enrolment.wrapped, limits=FAST) == enrolment.vault_key
    derived = derive_vault_secrets(PASS, enrolment.params, limits=FAST)
    assert derived.credential == enrolment.credential


def test_a_wrong_passphrase_raises_wrong_passphrase_and_changes_nothing() -> None:
    enrolment = fast_enrol()
    before = bytes(enrolment.wrapped)
    with pytest.raises(WrongPassphrase):
        recover_vault_key(PASS + " ", ACCOUNT, enrolment.wrapped, limits=FAST)
    with pytest.raises(WrongPassphrase):
        change_passphrase(
            "not the passphrase",
            "a new passphrase!",
            ACCOUNT,
            enrolment.wrapped,
            params=fast_params(),
            limits=FAST,
        )
    assert enrolment.wrapped == before
    assert recover_vault_key(PASS, ACCOUNT, enrolment.wrapped, limits=FAST) == enrolment.vault_key
    assert issubclass(WrongPassphrase, SignalProtocolError)


def test_the_wrapped_key_is_bound_to_its_account() -> None:
    enrolment = fast_enrol()
    with pytest.raises(WrongPassphrase):
        recover_vault_key(PASS, "another-account", enrolment.wrapped, limits=FAST)


def test_every_bit_flip_of_the_wrapped_key_is_detected() -> None:
    enrolment = fast_enrol()
    key = derive_vault_secrets(PASS, enrolment.params, limits=FAST).wrapping_key
    for tampered in flips(enrolment.wrapped):
        with pytest.raises((WrongPassphrase, VaultFormatError)):
            unwrap_vault_key(tampered, key, account_id=ACCOUNT)
    for cut in range(len(enrolment.wrapped)):
        with pytest.raises(VaultFormatError):
            unwrap_vault_key(enrolment.wrapped[:cut], key, account_id=ACCOUNT)


def test_wrapping_uses_a_fresh_nonce() -> None:
    key, wrapping = new_vault_key(), new_vault_key()
    params = fast_params()
    one = wrap_vault_key(key, wrapping, account_id=ACCOUNT, params=params)
    two = wrap_vault_key(key, wrapping, account_id=ACCOUNT, params=params)
    assert one != two
    assert unwrap_vault_key(one, wrapping, account_id=ACCOUNT) == key
    with pytest.raises(ValueError):
        wrap_vault_key(key[:16], wrapping, account_id=ACCOUNT, params=params)


@pytest.mark.parametrize("passphrase", ["", "short", "eleven char"])
def test_short_passphrases_are_refused(passphrase: str) -> None:
    with pytest.raises(WeakPassphrase):
        enrol(passphrase, ACCOUNT, params=fast_params(), limits=FAST)


def test_an_overlong_passphrase_is_refused() -> None:
    with pytest.raises(WeakPassphrase):
        derive_vault_secrets("x" * 1025, fast_params(), limits=FAST)


def test_the_default_params_work_end_to_end() -> None:
    start = time.perf_counter()
    enrolment = enrol(PASS, ACCOUNT)
    elapsed = time.perf_counter() - start
    assert enrolment.params == KdfParams(64 * 1024, 3, 1, enrolment.params.salt)
    assert recover_vault_key(PASS, ACCOUNT, enrolment.wrapped) == enrolment.vault_key
    assert elapsed < 30  # about 0.2 s here; generous for a loaded 2-core machine


# --- passphrase change --------------------------------------------------------------------------


def test_a_passphrase_change_keeps_the_vault_key_and_the_pages() -> None:
    enrolment = fast_enrol()
    page = seal_page(enrolment.vault_key, ACCOUNT, "h/c/0", b"history", generation=1)
    change = change_passphrase(
        PASS,
        "a brand new passphrase",
        ACCOUNT,
        enrolment.wrapped,
        params=fast_params(),
        limits=FAST,
    )
    new = change.enrolment
    assert change.old_credential == enrolment.credential
    assert new.vault_key == enrolment.vault_key
    assert new.params.salt != enrolment.params.salt
    assert new.credential != enrolment.credential
    recovered = recover_vault_key("a brand new passphrase", ACCOUNT, new.wrapped, limits=FAST)
    assert open_page(recovered, ACCOUNT, "h/c/0", page).plaintext == b"history"
    with pytest.raises(WrongPassphrase):
        recover_vault_key(PASS, ACCOUNT, new.wrapped, limits=FAST)


# --- pages --------------------------------------------------------------------------------------


@pytest.fixture
def vkey() -> bytes:
    return new_vault_key()


def test_a_page_round_trips_with_its_generation(vkey: bytes) -> None:
    sealed = seal_page(vkey, ACCOUNT, "h/c/0", b"hello", generation=7)
    assert sealed_page_generation(sealed) == 7
    opened = open_page(vkey, ACCOUNT, "h/c/0", sealed, min_generation=7)
    assert (opened.plaintext, opened.generation) == (b"hello", 7)
    assert seal_page(vkey, ACCOUNT, "h/c/0", b"hello", generation=7) != sealed


def test_every_bit_flip_and_every_truncation_of_a_page_is_detected(vkey: bytes) -> None:
    sealed = seal_page(vkey, ACCOUNT, "h/c/0", b"some history", generation=3)
    for tampered in flips(sealed):
        with pytest.raises(TamperedPage):
            open_page(vkey, ACCOUNT, "h/c/0", tampered)
    for cut in range(len(sealed)):
        with pytest.raises(TamperedPage):
            open_page(vkey, ACCOUNT, "h/c/0", sealed[:cut])
    with pytest.raises(TamperedPage):
        open_page(vkey, ACCOUNT, "h/c/0", sealed + b"\x00")


def test_pages_cannot_move_between_ids_accounts_or_vaults(vkey: bytes) -> None:
    first = seal_page(vkey, ACCOUNT, "h/c/0", b"first", generation=1)
    second = seal_page(vkey, ACCOUNT, "h/c/1", b"second", generation=1)
    with pytest.raises(TamperedPage):
        open_page(vkey, ACCOUNT, "h/c/1", first)  # swapped
    with pytest.raises(TamperedPage):
        open_page(vkey, ACCOUNT, "h/c/0", second)
    with pytest.raises(TamperedPage):
        open_page(vkey, "someone-else", "h/c/0", first)  # another account
    with pytest.raises(TamperedPage):
        open_page(new_vault_key(), ACCOUNT, "h/c/0", first)  # another vault


def test_an_older_generation_put_back_is_stale(vkey: bytes) -> None:
    old = seal_page(vkey, ACCOUNT, "h/c/0", b"v1", generation=1)
    new = seal_page(vkey, ACCOUNT, "h/c/0", b"v2", generation=2)
    assert open_page(vkey, ACCOUNT, "h/c/0", new, min_generation=2).plaintext == b"v2"
    with pytest.raises(StalePage):
        open_page(vkey, ACCOUNT, "h/c/0", old, min_generation=2)
    assert issubclass(StalePage, TamperedPage)
    # The server cannot renumber an old page: the generation is authenticated.
    bumped = old[:5] + (2).to_bytes(8, "big") + old[13:]
    with pytest.raises(TamperedPage):
        open_page(vkey, ACCOUNT, "h/c/0", bumped, min_generation=2)


def test_page_arguments_are_bounded(vkey: bytes) -> None:
    with pytest.raises(ValueError):
        seal_page(vkey, ACCOUNT, "p", b"x" * (vault.MAX_PAGE_PLAINTEXT + 1), generation=0)
    with pytest.raises(ValueError):
        seal_page(vkey, ACCOUNT, "p", b"", generation=-1)
    with pytest.raises(ValueError):
        seal_page(vkey, ACCOUNT, "", b"", generation=0)
    with pytest.raises(ValueError):
        seal_page(vkey, "x" * 256, "p", b"", generation=0)
    with pytest.raises(ValueError):
        seal_page(vkey[:31], ACCOUNT, "p", b"", generation=0)
    assert issubclass(TamperedPage, VaultError)


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=4096),
    page_id=st.text(min_size=1, max_size=60),
    account=st.text(min_size=1, max_size=60),
    generation=st.integers(min_value=0, max_value=vault.MAX_GENERATION),
)
def test_pages_round_trip_for_any_content(
    plaintext: bytes, page_id: str, account: str, generation: int
) -> None:
    key = new_vault_key()
    sealed = seal_page(key, account, page_id, plaintext, generation=generation)
    opened = open_page(key, account, page_id, sealed, min_generation=generation)
    assert (opened.plaintext, opened.generation) == (plaintext, generation)
    with pytest.raises(TamperedPage):
        open_page(key, account, page_id + "x", sealed)
