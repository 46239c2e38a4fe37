"""The history vault's keys: a passphrase-wrapped vault key and the pages it seals.

Guarantees, first:

* **What the server stores and learns.** The server holds, per account, the *wrapped* vault key
  (its :class:`KdfParams` and salt in the clear), a *verifier* of the recovery credential, and
  opaque sealed pages with their ids and generations. It never sees the passphrase, the vault
  key, the wrapping key or a page's plaintext. Its only way to the vault key is to guess the
  passphrase, and every guess costs one full Argon2id at the stored params — the same cost for
  the honest server, a malicious one and a thief of its database (see *credential* below).
* **What is checked before what.** Params are checked against :class:`KdfLimits` *before*
  Argon2id runs and before any credential is derived, so a malicious server cannot make the
  client hand over a credential computed with cheap params (a downgrade) nor make it allocate
  unbounded memory. A wrapped key or a page is parsed, then authenticated (AES-256-GCM) as a
  whole, before a byte of plaintext is returned; a wrong passphrase and a tampered wrapped key
  are indistinguishable and raise :class:`WrongPassphrase`; a tampered, moved, swapped, foreign
  or truncated page raises :class:`TamperedPage`, an authentic but older page than the caller
  knows of raises :class:`StalePage` (a :class:`TamperedPage`).
* **What is not protected.** Sizes, counts, page ids, generations and timing of uploads are
  visible to the server. Rollback of a page is only detected against a generation the client
  remembers (``min_generation``): a fresh device restoring from scratch has no such memory and
  can be served a consistent older snapshot of the whole vault.

Keys. One Argon2id run (:func:`argon2.low_level.hash_secret_raw`, 64 bytes) over the NFC-normalized
UTF-8 passphrase and the 16-byte salt feeds HKDF-SHA256 twice, with distinct ``info`` labels that
include the encoded params: the **wrapping key** (never leaves the device) encrypts the random
32-byte vault key; the **recovery credential** is sent to the server at enrolment and when a new
device fetches the wrapped key. HKDF makes the two independent: knowing the credential gives
nothing about the wrapping key except through guessing the passphrase.

Credential storage (server side; the server never imports this module). The server keeps
``verifier = HMAC-SHA256(pepper, b"tidings vault verifier v1" || credential)``, with ``pepper`` a
32-byte server secret kept outside the database, and compares in constant time. The credential
is already the output of the slow Argon2id over the passphrase, so a fast hash on top loses
nothing: a thief of the database must still run one Argon2id per passphrase guess to test it
against the verifier — no faster than testing guesses against the wrapped key, which is stored
next to it anyway — and cannot replay the verifier as a credential. The pepper only keeps the
verifier from being a second oracle; the wrapped key stays one, at that same cost. The salt
and params are public: the server hands them out per username before the proof, and for an
unknown username answers with deterministic fake ones (salt = first 16 bytes of
``HMAC-SHA256(server_secret, b"tidings vault fake salt v1" || username)``, params = the
current defaults) so that existence of a username does not leak.

Why not OPAQUE: it would keep even the Argon2id-hard credential from the server and make
precomputation impossible before a compromise, but there is no maintained Python implementation
to build on; an aPAKE is the natural upgrade, behind a new :attr:`KdfParams.version`.

Cost of the defaults (Argon2id, m = 64 MiB, t = 3, p = 1), measured on this project's server CPU
(a 2-core Intel Xeon VM, argon2-cffi 25.1): 0.15 s per derivation on an idle core, 0.15-0.28 s
with the machine shared. A mid-range phone is roughly 3-5x slower per core, with less memory
bandwidth, so an unlock there should take about 0.5-0.8 s, and may reach 1-1.5 s on a slow or
throttled device (an estimate, not a measurement): acceptable for a one-off enrolment,
recovery or passphrase change. An attacker pays the same 64 MiB and three passes per guess.
"""

from __future__ import annotations

import secrets
import struct
import unicodedata
from dataclasses import dataclass, field

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import (
    StalePage,
    TamperedExport,
    TamperedPage,
    VaultError,
    VaultFormatError,
    WeakPassphrase,
    WrongPassphrase,
)
from .symmetric import hkdf_sha256

__all__ = [
    "DEFAULT_M_COST_KIB",
    "DEFAULT_PARALLELISM",
    "DEFAULT_T_COST",
    "KDF_VERSION",
    "MAX_PAGE_PLAINTEXT",
    "MIN_PASSPHRASE_LENGTH",
    "PRODUCTION_LIMITS",
    "Enrolment",
    "KdfLimits",
    "KdfParams",
    "OpenedPage",
    "PassphraseChange",
    "StalePage",
    "TamperedExport",
    "TamperedPage",
    "VaultError",
    "VaultFormatError",
    "VaultSecrets",
    "WeakPassphrase",
    "WrongPassphrase",
    "change_passphrase",
    "derive_vault_secrets",
    "enrol",
    "new_kdf_params",
    "new_vault_key",
    "normalize_passphrase",
    "open_page",
    "recover_vault_key",
    "rewrap",
    "seal_page",
    "sealed_page_generation",
    "unwrap_vault_key",
    "wrap_vault_key",
    "wrapped_key_params",
]

KDF_VERSION = 1
DEFAULT_M_COST_KIB = 64 * 1024
DEFAULT_T_COST = 3
DEFAULT_PARALLELISM = 1
SALT_LENGTH = 16
KEY_LENGTH = 32
MIN_PASSPHRASE_LENGTH = 12
MAX_PASSPHRASE_BYTES = 1024
MAX_ID_BYTES = 255
MAX_PAGE_PLAINTEXT = 1 << 20
MAX_GENERATION = (1 << 64) - 1

_ARGON2_OUTPUT = 64
_PARAMS = struct.Struct(">BIIB16s")  # version, m_cost KiB, t_cost, parallelism, salt
_WRAP_MAGIC = b"TDVK"
_WRAP_FORMAT = 1
_PAGE_MAGIC = b"TDPG"
_PAGE_FORMAT = 1
_PAGE_HEADER = struct.Struct(">4sBQ12s")  # magic, format, generation, nonce
_NONCE = 12
_TAG = 16
_WRAPPED_LENGTH = 4 + 1 + _PARAMS.size + _NONCE + KEY_LENGTH + _TAG


@dataclass(frozen=True, slots=True)
class KdfLimits:
    """What params the client accepts from anyone, the server included (checked before use)."""

    min_m_cost_kib: int = DEFAULT_M_COST_KIB
    max_m_cost_kib: int = 1024 * 1024
    min_t_cost: int = DEFAULT_T_COST
    max_t_cost: int = 16
    max_parallelism: int = 8


PRODUCTION_LIMITS = KdfLimits()


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost and salt; public, stored in the clear with the wrapped key."""

    m_cost_kib: int
    t_cost: int
    parallelism: int
    salt: bytes
    version: int = KDF_VERSION

    def encode(self) -> bytes:
        """The fixed 26-byte encoding (also bound into every key derived from these params)."""
        return _PARAMS.pack(self.version, self.m_cost_kib, self.t_cost, self.parallelism, self.salt)

    @classmethod
    def decode(cls, data: bytes) -> KdfParams:
        """Parse :meth:`encode`'s output; :class:`VaultFormatError` if malformed."""
        if len(data) != _PARAMS.size:
            raise VaultFormatError("KDF params have the wrong length")
        version, m_cost, t_cost, parallelism, salt = _PARAMS.unpack(data)
        return cls(m_cost, t_cost, parallelism, salt, version)

    def check(self, limits: KdfLimits) -> None:
        """:class:`VaultFormatError` unless these params are of a known version and in limits."""
        if self.version != KDF_VERSION:
            raise VaultFormatError(f"unknown KDF params version {self.version}")
        if len(self.salt) != SALT_LENGTH:
            raise VaultFormatError("the salt must be 16 bytes")
        if not limits.min_m_cost_kib <= self.m_cost_kib <= limits.max_m_cost_kib:
            raise VaultFormatError(f"Argon2id memory {self.m_cost_kib} KiB is out of limits")
        if not limits.min_t_cost <= self.t_cost <= limits.max_t_cost:
            raise VaultFormatError(f"Argon2id passes {self.t_cost} are out of limits")
        if not 1 <= self.parallelism <= limits.max_parallelism:
            raise VaultFormatError(f"Argon2id parallelism {self.parallelism} is out of limits")
        if self.m_cost_kib < 8 * self.parallelism:
            raise VaultFormatError("Argon2id memory must be at least 8 KiB per lane")


@dataclass(frozen=True, slots=True)
class VaultSecrets:
    """What one passphrase and one set of params yield."""

    params: KdfParams
    #: wraps the vault key; never leaves the device
    wrapping_key: bytes = field(repr=False)
    #: proves knowledge of the passphrase to the server (which stores only a verifier of it)
    credential: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A vault key wrapped under a passphrase: ``wrapped`` and ``credential`` go to the server."""

    vault_key: bytes = field(repr=False)
    wrapped: bytes
    credential: bytes = field(repr=False)
    params: KdfParams


@dataclass(frozen=True, slots=True)
class PassphraseChange:
    """The old credential authorizes, at the server, the replacement by ``enrolment``."""

    old_credential: bytes = field(repr=False)
    enrolment: Enrolment


@dataclass(frozen=True, slots=True)
class OpenedPage:
    """An authenticated page: its plaintext and the generation it was sealed at."""

    plaintext: bytes
    generation: int


def new_vault_key() -> bytes:
    """A fresh random 32-byte vault key."""
    return secrets.token_bytes(KEY_LENGTH)


def new_kdf_params(
    *,
    m_cost_kib: int = DEFAULT_M_COST_KIB,
    t_cost: int = DEFAULT_T_COST,
    parallelism: int = DEFAULT_PARALLELISM,
) -> KdfParams:
    """Params with a fresh random salt (a new one at every enrolment and passphrase change)."""
    return KdfParams(m_cost_kib, t_cost, parallelism, secrets.token_bytes(SALT_LENGTH))


def normalize_passphrase(passphrase: str) -> bytes:
    """NFC, then UTF-8, so the same passphrase typed on another device derives the same keys."""
    data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not data:
        raise WeakPassphrase("the passphrase is empty")
    if len(data) > MAX_PASSPHRASE_BYTES:
        raise WeakPassphrase(f"the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes")
    return data


def _id_bytes(value: str, what: str) -> bytes:
    data = value.encode("utf-8")
    if not data or len(data) > MAX_ID_BYTES:
        raise ValueError(f"{what} must be 1..{MAX_ID_BYTES} bytes of UTF-8")
    return bytes((len(data),)) + data


def derive_vault_secrets(
    passphrase: str, params: KdfParams, *, limits: KdfLimits = PRODUCTION_LIMITS
) -> VaultSecrets:
    """Run Argon2id once and split it into the wrapping key and the recovery credential.

    Deterministic in (passphrase, params). The params are checked against ``limits`` first:
    :class:`VaultFormatError` if they are too weak, too costly or of an unknown version.
    """
    params.check(limits)
    secret = normalize_passphrase(passphrase)
    output = hash_secret_raw(
        secret,
        params.salt,
        time_cost=params.t_cost,
        memory_cost=params.m_cost_kib,
        parallelism=params.parallelism,
        hash_len=_ARGON2_OUTPUT,
        type=Type.ID,
    )
    encoded = params.encode()
    return VaultSecrets(
        params=params,
        wrapping_key=hkdf_sha256(output, b"tidings vault wrapping key v1" + encoded, KEY_LENGTH),
        credential=hkdf_sha256(output, b"tidings vault recovery credential v1" + encoded, 32),
    )


def _wrap_ad(account_id: str, encoded_params: bytes) -> bytes:
    return _WRAP_MAGIC + bytes((_WRAP_FORMAT,)) + encoded_params + _id_bytes(account_id, "account")


def wrap_vault_key(
    vault_key: bytes, wrapping_key: bytes, *, account_id: str, params: KdfParams
) -> bytes:
    """Encrypt the vault key (AES-256-GCM, random nonce); account id and params are bound as AD.

    The result (91 bytes) carries the params in the clear, so it is all a new device needs
    besides the passphrase.
    """
    if len(vault_key) != KEY_LENGTH or len(wrapping_key) != KEY_LENGTH:
        raise ValueError("the vault key and the wrapping key are 32 bytes")
    encoded = params.encode()
    nonce = secrets.token_bytes(_NONCE)
    sealed = AESGCM(wrapping_key).encrypt(nonce, vault_key, _wrap_ad(account_id, encoded))
    return _WRAP_MAGIC + bytes((_WRAP_FORMAT,)) + encoded + nonce + sealed


def wrapped_key_params(wrapped: bytes) -> KdfParams:
    """The params in a wrapped key, unauthenticated until :func:`unwrap_vault_key` succeeds."""
    if len(wrapped) != _WRAPPED_LENGTH or wrapped[:4] != _WRAP_MAGIC:
        raise VaultFormatError("not a wrapped vault key")
    if wrapped[4] != _WRAP_FORMAT:
        raise VaultFormatError(f"unknown wrapped key format {wrapped[4]}")
    return KdfParams.decode(wrapped[5 : 5 + _PARAMS.size])


def unwrap_vault_key(wrapped: bytes, wrapping_key: bytes, *, account_id: str) -> bytes:
    """The vault key; :class:`WrongPassphrase` if the key or anything in ``wrapped`` is wrong."""
    wrapped_key_params(wrapped)
    encoded = wrapped[5 : 5 + _PARAMS.size]
    nonce = wrapped[5 + _PARAMS.size : 5 + _PARAMS.size + _NONCE]
    try:
        return AESGCM(wrapping_key).decrypt(
            nonce, wrapped[5 + _PARAMS.size + _NONCE :], _wrap_ad(account_id, encoded)
        )
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (or the wrapped key was altered)") from None


def rewrap(
    vault_key: bytes,
    passphrase: str,
    account_id: str,
    *,
    params: KdfParams | None = None,
    limits: KdfLimits = PRODUCTION_LIMITS,
) -> Enrolment:
    """Wrap ``vault_key`` under ``passphrase`` with fresh params (a new salt unless given)."""
    if len(unicodedata.normalize("NFC", passphrase)) < MIN_PASSPHRASE_LENGTH:
        raise WeakPassphrase(f"a passphrase needs at least {MIN_PASSPHRASE_LENGTH} characters")
    derived = derive_vault_secrets(passphrase, params or new_kdf_params(), limits=limits)
    wrapped = wrap_vault_key(
        vault_key, derived.wrapping_key, account_id=account_id, params=derived.params
    )
    return Enrolment(vault_key, wrapped, derived.credential, derived.params)


def enrol(
    passphrase: str,
    account_id: str,
    *,
    params: KdfParams | None = None,
    limits: KdfLimits = PRODUCTION_LIMITS,
) -> Enrolment:
    """A new vault: a random vault key wrapped under ``passphrase`` (at least 12 characters)."""
    return rewrap(new_vault_key(), passphrase, account_id, params=params, limits=limits)


def recover_vault_key(
    passphrase: str, account_id: str, wrapped: bytes, *, limits: KdfLimits = PRODUCTION_LIMITS
) -> bytes:
    """Unwrap with a passphrase alone (e.g. from an export file); :class:`WrongPassphrase`."""
    derived = derive_vault_secrets(passphrase, wrapped_key_params(wrapped), limits=limits)
    return unwrap_vault_key(wrapped, derived.wrapping_key, account_id=account_id)


def change_passphrase(
    old_passphrase: str,
    new_passphrase: str,
    account_id: str,
    wrapped: bytes,
    *,
    params: KdfParams | None = None,
    limits: KdfLimits = PRODUCTION_LIMITS,
) -> PassphraseChange:
    """Re-wrap the *same* vault key under a new passphrase and salt; pages stay as they are.

    :class:`WrongPassphrase` if ``old_passphrase`` does not unwrap ``wrapped`` (then nothing
    is derived for the new one). The server must accept the new wrapped key and credential
    only with a valid proof by the old credential.
    """
    old = derive_vault_secrets(old_passphrase, wrapped_key_params(wrapped), limits=limits)
    vault_key = unwrap_vault_key(wrapped, old.wrapping_key, account_id=account_id)
    new = rewrap(vault_key, new_passphrase, account_id, params=params, limits=limits)
    return PassphraseChange(old.credential, new)


def _page_key(vault_key: bytes, account: bytes, page: bytes) -> bytes:
    if len(vault_key) != KEY_LENGTH:
        raise ValueError("the vault key is 32 bytes")
    return hkdf_sha256(vault_key, b"tidings vault page key v1" + account + page, KEY_LENGTH)


def _page_ad(account: bytes, page: bytes, generation: int) -> bytes:
    return _PAGE_MAGIC + bytes((_PAGE_FORMAT,)) + account + page + generation.to_bytes(8, "big")


def seal_page(
    vault_key: bytes, account_id: str, page_id: str, plaintext: bytes, *, generation: int
) -> bytes:
    """Encrypt one page under its own subkey; id, account, format and generation are AD.

    ``generation`` must grow each time the page with this id is re-sealed, so that an older
    copy put back by the server is caught by :func:`open_page`'s ``min_generation``.
    """
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError("the generation is a 64-bit unsigned integer")
    if len(plaintext) > MAX_PAGE_PLAINTEXT:
        raise ValueError(f"a page holds at most {MAX_PAGE_PLAINTEXT} bytes")
    account = _id_bytes(account_id, "account id")
    page = _id_bytes(page_id, "page id")
    nonce = secrets.token_bytes(_NONCE)
    header = _PAGE_HEADER.pack(_PAGE_MAGIC, _PAGE_FORMAT, generation, nonce)
    key = AESGCM(_page_key(vault_key, account, page))
    return header + key.encrypt(nonce, plaintext, _page_ad(account, page, generation))


def sealed_page_generation(sealed: bytes) -> int:
    """The generation in a sealed page's header (unauthenticated: for ordering uploads only)."""
    if len(sealed) < _PAGE_HEADER.size + _TAG or sealed[:4] != _PAGE_MAGIC:
        raise TamperedPage("not a sealed page (too short or bad magic)")
    _magic, fmt, generation, _nonce = _PAGE_HEADER.unpack_from(sealed)
    if fmt != _PAGE_FORMAT:
        raise TamperedPage(f"unknown page format {fmt}")
    return int(generation)


def open_page(
    vault_key: bytes, account_id: str, page_id: str, sealed: bytes, *, min_generation: int = 0
) -> OpenedPage:
    """Authenticate and decrypt a page sealed under this account and page id.

    :class:`TamperedPage` for any change to the bytes, a truncation, or a page sealed under
    another id, account or vault key; then :class:`StalePage` if it is authentic but older
    than ``min_generation`` (the latest generation the caller knows).
    """
    generation = sealed_page_generation(sealed)
    if len(sealed) > _PAGE_HEADER.size + MAX_PAGE_PLAINTEXT + _TAG:
        raise TamperedPage("the sealed page is larger than any page")
    account = _id_bytes(account_id, "account id")
    page = _id_bytes(page_id, "page id")
    nonce = sealed[_PAGE_HEADER.size - _NONCE : _PAGE_HEADER.size]
    key = AESGCM(_page_key(vault_key, account, page))
    try:
        plaintext = key.decrypt(
            nonce, sealed[_PAGE_HEADER.size :], _page_ad(account, page, generation)
        )
    except InvalidTag:
        raise TamperedPage(f"page {page_id!r} does not authenticate") from None
    if generation < min_generation:
        raise StalePage(f"page {page_id!r} is generation {generation} < {min_generation}")
    return OpenedPage(plaintext, generation)
