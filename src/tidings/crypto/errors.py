"""Typed errors of :mod:`tidings.crypto`, mirroring libsignal's ``SignalProtocolError`` variants.

Every error raised by the library derives from :class:`SignalProtocolError`. Where libsignal
folds several causes into one variant (a bad MAC is reported as ``InvalidMessage``), the
finer-grained class here is a subclass of the libsignal-shaped one, so callers may catch either.
"""

from __future__ import annotations

__all__ = [
    "DuplicateMessageError",
    "InvalidKeyError",
    "InvalidKyberPreKeyIdError",
    "InvalidMacError",
    "InvalidMessageError",
    "InvalidPreKeyIdError",
    "InvalidSenderKeySessionError",
    "InvalidSessionError",
    "InvalidSignatureError",
    "InvalidSignedPreKeyIdError",
    "InvalidStateError",
    "LegacyCiphertextVersionError",
    "NoSessionError",
    "SignalProtocolError",
    "UnrecognizedMessageVersionError",
    "UntrustedIdentityError",
]


class SignalProtocolError(Exception):
    """Base class of every error raised by :mod:`tidings.crypto`."""


class InvalidKeyError(SignalProtocolError):
    """A key is malformed: unknown type byte, wrong length, or not a usable point."""


class InvalidSignatureError(SignalProtocolError):
    """A signature does not verify (libsignal: ``SignatureValidationFailed``)."""


class InvalidMessageError(SignalProtocolError):
    """A message is malformed, truncated, or fails to authenticate or decrypt."""


class InvalidMacError(InvalidMessageError):
    """A message's MAC does not verify (libsignal reports this as ``InvalidMessage``)."""


class DuplicateMessageError(SignalProtocolError):
    """A message was already decrypted: its key is gone (replay or duplicate delivery)."""


class LegacyCiphertextVersionError(SignalProtocolError):
    """The message's version is older than the oldest this library speaks (below 3)."""


class UnrecognizedMessageVersionError(SignalProtocolError):
    """The message's version is newer than the newest this library speaks."""


class UntrustedIdentityError(SignalProtocolError):
    """The peer's identity key is not trusted by the :class:`IdentityKeyStore`.

    ``name`` is the peer's address name, as in libsignal's ``UntrustedIdentity(address)``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"untrusted identity for address {name}")
        self.name = name


class NoSessionError(SignalProtocolError):
    """No usable session exists for the address (libsignal: ``SessionNotFound``)."""


class InvalidSessionError(SignalProtocolError):
    """A session exists but cannot be used (e.g. it has no sender chain)."""


class InvalidPreKeyIdError(SignalProtocolError):
    """The one-time prekey a message refers to is not in the store."""


class InvalidSignedPreKeyIdError(InvalidPreKeyIdError):
    """The signed prekey a message refers to is not in the store."""


class InvalidKyberPreKeyIdError(InvalidPreKeyIdError):
    """The Kyber prekey a message refers to is not in the store."""


class InvalidStateError(SignalProtocolError):
    """A stored record is corrupt or of an unknown format version."""


class InvalidSenderKeySessionError(SignalProtocolError):
    """No sender key state exists for the distribution id (used by Sender Keys)."""


class VaultError(SignalProtocolError):
    """Base class of the history vault's errors (:mod:`tidings.crypto.vault`)."""


class WrongPassphrase(VaultError):
    """The passphrase does not unwrap the vault key (or the wrapped key was altered)."""


class WeakPassphrase(VaultError, ValueError):
    """A passphrase is refused before any key is derived: empty, too short or too long."""


class VaultFormatError(VaultError):
    """A wrapped key or KDF params are malformed, of an unknown version, or out of limits."""


class TamperedPage(VaultError):
    """A sealed page does not authenticate under its account, page id and vault key."""


class StalePage(TamperedPage):
    """An authentic page older than the latest generation the client knows (a rollback)."""


class TamperedExport(VaultError):
    """An export file is truncated, reordered, spliced or otherwise not as it was written."""
