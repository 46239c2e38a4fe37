"""REST bodies of the history vault (``/v1/vault``): enrolment, recovery, pages.

Bytes travel base64-encoded in JSON (msgspec's encoding of ``bytes``). The server treats every
blob here as opaque: ``params`` is the 26-byte encoded Argon2id params (stored and handed out,
never interpreted beyond its length), ``wrapped`` the wrapped vault key, ``sealed`` a sealed
page, ``credential`` the 32-byte recovery credential (kept only as a verifier).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tidings.protocol.rest import DeviceToken, Username

__all__ = [
    "MAX_PAGES_PER_CALL",
    "MAX_PAGE_ID",
    "MAX_SEALED_PAGE",
    "PARAMS_LENGTH",
    "ChangePassphrase",
    "FetchPages",
    "PageInfo",
    "PageList",
    "RecoverDevice",
    "RecoveredDevice",
    "VaultEnrol",
    "VaultPage",
    "VaultPages",
    "VaultParams",
    "VaultProof",
    "VaultRecovered",
    "VaultStatus",
]

#: encoded KdfParams: version u8, m_cost u32, t_cost u32, parallelism u8, salt 16 bytes
PARAMS_LENGTH = 26
#: a sealed page: at most 1 MiB of plaintext, its header and tag
MAX_SEALED_PAGE = (1 << 20) + 64
MAX_PAGE_ID = 255
#: pages one upload or fetch may carry
MAX_PAGES_PER_CALL = 64

_Params = Annotated[bytes, msgspec.Meta(min_length=PARAMS_LENGTH, max_length=PARAMS_LENGTH)]
_Credential = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
_Wrapped = Annotated[bytes, msgspec.Meta(min_length=1, max_length=4096)]
_PageId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PAGE_ID)]
_Generation = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
_Sealed = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_SEALED_PAGE)]


class VaultEnrol(msgspec.Struct, frozen=True):
    """PUT /v1/vault: a device enrols its account (once; a repeat with the same body is fine)."""

    wrapped: _Wrapped
    params: _Params
    credential: _Credential


class VaultStatus(msgspec.Struct, frozen=True):
    enrolled: bool
    pages: int = 0
    bytes: int = 0
    quota: int = 0


class VaultParams(msgspec.Struct, frozen=True):
    """GET /v1/vault/params/{username}: the params to derive with (fake ones for an unknown
    username, of the same shape)."""

    params: _Params


class VaultProof(msgspec.Struct, frozen=True):
    """POST /v1/vault/recover: proof of the passphrase by the credential."""

    username: Username
    credential: _Credential


class VaultRecovered(msgspec.Struct, frozen=True):
    account_id: str
    wrapped: bytes
    #: one-time ticket for POST /v1/vault/register (valid a few minutes)
    ticket: str
    expires_at: int


class RecoverDevice(msgspec.Struct, frozen=True):
    """POST /v1/vault/register: a new device of the recovered account, with a token the
    client chose (as at sign-up); a repeat with the same ticket and token gets the same device."""

    ticket: Annotated[str, msgspec.Meta(min_length=16, max_length=100)]
    token: DeviceToken
    device_name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "recovered"


class RecoveredDevice(msgspec.Struct, frozen=True):
    account_id: str
    username: str
    device_id: int
    token: str


class ChangePassphrase(msgspec.Struct, frozen=True):
    """PUT /v1/vault/passphrase: the old credential authorizes the new wrapped key."""

    old_credential: _Credential
    wrapped: _Wrapped
    params: _Params
    credential: _Credential


class VaultPage(msgspec.Struct, frozen=True):
    id: _PageId
    generation: _Generation
    sealed: _Sealed


class VaultPages(msgspec.Struct, frozen=True):
    """POST /v1/vault/pages: stored all together or not at all."""

    pages: Annotated[list[VaultPage], msgspec.Meta(min_length=1, max_length=MAX_PAGES_PER_CALL)]


class PageInfo(msgspec.Struct, frozen=True):
    id: str
    generation: int
    size: int


class PageList(msgspec.Struct, frozen=True):
    pages: list[PageInfo]


class FetchPages(msgspec.Struct, frozen=True):
    """POST /v1/vault/pages/fetch: the pages with these ids that exist."""

    ids: Annotated[list[_PageId], msgspec.Meta(min_length=1, max_length=MAX_PAGES_PER_CALL)]
