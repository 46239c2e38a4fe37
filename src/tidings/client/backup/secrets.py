"""The account secrets record: what a new device needs, besides history, to become the account.

Guarantees, first: the record holds the account's identity key pair, so it is only ever sealed
with the vault key (:func:`tidings.crypto.vault.seal_page` under the reserved page id
:data:`SECRETS_PAGE_ID`, which no history page id can take: those start with ``h/``). The
server sees that a secrets page exists, its generation and size, nothing else.
:func:`open_secrets` authenticates before decoding, then checks that the record names the
account it was opened for. ``repr`` of a record never shows the private key.

What it holds: the account id, username and server, the serialized ``IdentityKeyPair`` and
registration id (what :class:`~tidings.client.provisioning.ProvisionMessage` gives a linked
device: enough to register a new device under the same identity), the contacts' identity keys
with their verified/blocked state (so safety-number verification survives a recovery), and
per-conversation settings, with an opaque ``extra`` for later fields.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tidings.crypto.vault import MAX_PAGE_PLAINTEXT, open_page, seal_page

__all__ = [
    "SECRETS_FORMAT",
    "SECRETS_PAGE_ID",
    "AccountSecrets",
    "ContactIdentity",
    "ConversationSettings",
    "SecretsError",
    "decode_secrets",
    "encode_secrets",
    "open_secrets",
    "seal_secrets",
]

SECRETS_FORMAT = 1
SECRETS_PAGE_ID = "account/secrets"
MAX_CONTACTS = 10_000
MAX_CONVERSATIONS = 10_000

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Uint = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
_Key = Annotated[bytes, msgspec.Meta(max_length=4096)]


class SecretsError(ValueError):
    """An authentic secrets page whose content is malformed or names another account."""


class ContactIdentity(msgspec.Struct, frozen=True, array_like=True):
    """A contact's identity key as this account last accepted it."""

    account_id: _Id
    #: the serialized IdentityKey
    identity_key: _Key
    verified: bool = False
    #: the key changed after the user verified it: sending stays stopped after recovery
    blocked: bool = False


class ConversationSettings(msgspec.Struct, frozen=True, array_like=True):
    """A conversation's local settings."""

    conv_id: _Id
    #: ms since the epoch; 0 = not muted
    muted_until: _Uint = 0
    archived: bool = False
    pinned: bool = False
    #: disappearing-message timer in seconds; 0 = off
    expire_seconds: _Uint = 0
    extra: bytes | None = None


class AccountSecrets(msgspec.Struct, frozen=True, array_like=True):
    """Everything secret the account needs to be re-created on a new device."""

    account_id: _Id
    username: _Id
    server_url: Annotated[str, msgspec.Meta(max_length=2048)]
    #: the serialized IdentityKeyPair (private key included)
    identity: _Key
    registration_id: Annotated[int, msgspec.Meta(ge=0, le=0x3FFF)]
    contacts: Annotated[list[ContactIdentity], msgspec.Meta(max_length=MAX_CONTACTS)] = []
    conversations: Annotated[
        list[ConversationSettings], msgspec.Meta(max_length=MAX_CONVERSATIONS)
    ] = []
    extra: bytes | None = None
    version: int = SECRETS_FORMAT

    def __repr__(self) -> str:
        return (
            f"AccountSecrets(account_id={self.account_id!r}, username={self.username!r}, "
            f"contacts={len(self.contacts)}, conversations={len(self.conversations)}, ...)"
        )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AccountSecrets)


def decode_secrets(data: bytes) -> AccountSecrets:
    """Decode a record under the bounds; :class:`SecretsError` if malformed."""
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise SecretsError(f"malformed account secrets: {exc}") from None
    if record.version != SECRETS_FORMAT:
        raise SecretsError(f"unknown account secrets format {record.version}")
    return record


def encode_secrets(record: AccountSecrets) -> bytes:
    """The deterministic msgpack encoding; :class:`SecretsError` if it breaks a bound."""
    data = _encoder.encode(record)
    if len(data) > MAX_PAGE_PLAINTEXT:
        raise SecretsError(f"the account secrets encode to {len(data)} bytes")
    decode_secrets(data)  # the bounds of the Meta annotations, checked before anything is sealed
    return data


def seal_secrets(vault_key: bytes, record: AccountSecrets, *, generation: int) -> bytes:
    """Seal the record under :data:`SECRETS_PAGE_ID` of its own account."""
    return seal_page(
        vault_key, record.account_id, SECRETS_PAGE_ID, encode_secrets(record), generation=generation
    )


def open_secrets(
    vault_key: bytes, account_id: str, sealed: bytes, *, min_generation: int = 0
) -> tuple[AccountSecrets, int]:
    """Authenticate, then decode: the record and its generation.

    :class:`~tidings.crypto.errors.TamperedPage` / ``StalePage`` first, then
    :class:`SecretsError` if the authentic plaintext is malformed or names another account.
    """
    opened = open_page(
        vault_key, account_id, SECRETS_PAGE_ID, sealed, min_generation=min_generation
    )
    record = decode_secrets(opened.plaintext)
    if record.account_id != account_id:
        raise SecretsError("the secrets record names another account")
    return record, opened.generation
