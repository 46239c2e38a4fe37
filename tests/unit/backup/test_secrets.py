"""The account secrets record: sealed under the reserved page id, bound to its account."""

from __future__ import annotations

import msgspec
import pytest

from tidings.client.backup.pages import open_history_page
from tidings.client.backup.secrets import (
    SECRETS_PAGE_ID,
    AccountSecrets,
    ContactIdentity,
    ConversationSettings,
    SecretsError,
    decode_secrets,
    encode_secrets,
    open_secrets,
    seal_secrets,
)
from tidings.crypto.vault import StalePage, TamperedPage, new_vault_key, seal_page

from .helpers import ACCOUNT

IDENTITY = bytes(range(64))


def record(account: str = ACCOUNT, **fields: object) -> AccountSecrets:
    base: dict[str, object] = {
        "account_id": account,
        "username": "alice",
        "server_url": "https://chat.example",
        "identity": IDENTITY,
        "registration_id": 1234,
        "contacts": [
            ContactIdentity("bob", b"\x05" + bytes(32), verified=True),
            ContactIdentity("carol", b"\x05" + bytes([1]) * 32, blocked=True),
        ],
        "conversations": [ConversationSettings("c1", muted_until=99, pinned=True)],
    }
    base.update(fields)
    return AccountSecrets(**base)  # type: ignore[arg-type]


def test_secrets_round_trip_sealed_under_the_reserved_id() -> None:
    key = new_vault_key()
    secrets = record()
    sealed = seal_secrets(key, secrets, generation=4)
    assert open_secrets(key, ACCOUNT, sealed) == (secrets, 4)
    assert encode_secrets(secrets) == encode_secrets(decode_secrets(encode_secrets(secrets)))
    with pytest.raises(StalePage):
        open_secrets(key, ACCOUNT, sealed, min_generation=5)


def test_the_reserved_id_is_not_a_history_page_id() -> None:
    assert not SECRETS_PAGE_ID.startswith("h/")
    key = new_vault_key()
    sealed = seal_secrets(key, record(), generation=0)
    for conv in ("account", "secrets"):
        with pytest.raises(TamperedPage):
            open_history_page(key, ACCOUNT, conv, 0, sealed)


def test_secrets_of_another_account_or_tampered_are_refused() -> None:
    key = new_vault_key()
    sealed = seal_secrets(key, record(), generation=0)
    with pytest.raises(TamperedPage):
        open_secrets(key, "someone-else", sealed)
    with pytest.raises(TamperedPage):
        open_secrets(new_vault_key(), ACCOUNT, sealed)
    for i in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[i] ^= 0x40
        with pytest.raises(TamperedPage):
            open_secrets(key, ACCOUNT, bytes(flipped))
    # Authentic under this account, but its content names another one.
    lying = seal_page(key, ACCOUNT, SECRETS_PAGE_ID, encode_secrets(record("x")), generation=0)
    with pytest.raises(SecretsError):
        open_secrets(key, ACCOUNT, lying)


def test_repr_never_shows_the_identity_key() -> None:
    text = repr(record())
    assert IDENTITY.hex() not in text
    assert repr(IDENTITY) not in text
    assert "alice" in text


@pytest.mark.parametrize(
    "bad",
    [
        record(registration_id=0x4000),
        record(account=""),
        record(identity=bytes(5000)),
        record(contacts=[ContactIdentity("x", b"k")] * 10_001),
        record(version=2),
    ],
)
def test_out_of_bounds_records_are_refused(bad: AccountSecrets) -> None:
    with pytest.raises(SecretsError):
        encode_secrets(bad)
    with pytest.raises(SecretsError):
        decode_secrets(msgspec.msgpack.encode(bad))


def test_malformed_plaintext_is_a_secrets_error() -> None:
    for data in (b"", b"\xc1", b"\x90", b"\x95\xa1a\xa1b\xa1c\xc4\x00\x01"[:-1]):
        with pytest.raises(SecretsError):
            decode_secrets(data)
