"""tidings.crypto: the Signal protocol (X3DH/PQXDH, Double Ratchet), wire-compatible with libsignal.

A pure library: no I/O, nothing imported from the rest of Tidings. Functions are synchronous
and mirror libsignal's; storage goes through the store protocols in :mod:`.stores`::

    process_prekey_bundle(bundle, bob, sessions, identities)        # Alice starts a session
    message = message_encrypt(b"hi", bob, sessions, identities)      # PreKey (3) until answered
    wire = message.serialize()
    # Bob, with message.type() == 3:
    message_decrypt_prekey(PreKeySignalMessage.deserialize(wire), alice, sessions, identities,
                           prekeys, signed_prekeys, kyber_prekeys)
    # later messages, type 2:
    message_decrypt_signal(SignalMessage.deserialize(wire), alice, sessions, identities)

Modules: :mod:`.keys` / :mod:`.xeddsa` / :mod:`.kem` (keys, signatures, Kyber), :mod:`.x3dh`
(session agreement), :mod:`.ratchet` (KDFs), :mod:`.session` (state, record, limits),
:mod:`.messages` (wire formats), :mod:`.session_cipher` (the functions above),
:mod:`.records` and :mod:`.stores` (prekeys and storage), :mod:`.protobuf` (wire codec).

Primitives come from two C libraries: libsodium through PyNaCl (X25519, and the Ed25519
arithmetic behind XEdDSA signing and verification) and OpenSSL through ``cryptography``
(AES-256-CBC, ML-KEM); SHA-2 and HMAC from :mod:`hashlib`.
"""

from .address import ProtocolAddress
from .bundle import PreKeyBundle
from .errors import (
    DuplicateMessageError,
    InvalidKeyError,
    InvalidKyberPreKeyIdError,
    InvalidMacError,
    InvalidMessageError,
    InvalidPreKeyIdError,
    InvalidSenderKeySessionError,
    InvalidSessionError,
    InvalidSignatureError,
    InvalidSignedPreKeyIdError,
    InvalidStateError,
    LegacyCiphertextVersionError,
    NoSessionError,
    SignalProtocolError,
    UnrecognizedMessageVersionError,
    UntrustedIdentityError,
)
from .kem import KyberKeyPair, KyberPublicKey, KyberSecretKey
from .keys import IdentityKey, IdentityKeyPair, KeyPair, PrivateKey, PublicKey
from .messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from .records import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from .session import SessionRecord
from .session_cipher import (
    message_decrypt,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)
from .stores import (
    Direction,
    IdentityKeyStore,
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)

__all__ = [
    "CiphertextMessage",
    "CiphertextMessageType",
    "Direction",
    "DuplicateMessageError",
    "IdentityKey",
    "IdentityKeyPair",
    "IdentityKeyStore",
    "InMemoryIdentityKeyStore",
    "InMemoryKyberPreKeyStore",
    "InMemoryPreKeyStore",
    "InMemorySessionStore",
    "InMemorySignedPreKeyStore",
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
    "KeyPair",
    "KyberKeyPair",
    "KyberPreKeyRecord",
    "KyberPreKeyStore",
    "KyberPublicKey",
    "KyberSecretKey",
    "LegacyCiphertextVersionError",
    "NoSessionError",
    "PreKeyBundle",
    "PreKeyRecord",
    "PreKeySignalMessage",
    "PreKeyStore",
    "PrivateKey",
    "ProtocolAddress",
    "PublicKey",
    "SessionRecord",
    "SessionStore",
    "SignalMessage",
    "SignalProtocolError",
    "SignedPreKeyRecord",
    "SignedPreKeyStore",
    "UnrecognizedMessageVersionError",
    "UntrustedIdentityError",
    "message_decrypt",
    "message_decrypt_prekey",
    "message_decrypt_signal",
    "message_encrypt",
    "process_prekey_bundle",
]

# Sender Keys and safety numbers (crypto B).
from .fingerprint import (
    DisplayableFingerprint,
    Fingerprint,
    FingerprintError,
    FingerprintParsingError,
    FingerprintVersionMismatchError,
    NumericFingerprintGenerator,
    ScannableFingerprint,
)
from .sender_keys import (
    InMemorySenderKeyStore,
    InvalidSenderKeySignatureError,
    NoSenderKeyStateError,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyStore,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

__all__ += [
    "DisplayableFingerprint",
    "Fingerprint",
    "FingerprintError",
    "FingerprintParsingError",
    "FingerprintVersionMismatchError",
    "InMemorySenderKeyStore",
    "InvalidSenderKeySignatureError",
    "NoSenderKeyStateError",
    "NumericFingerprintGenerator",
    "ScannableFingerprint",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "SenderKeyStore",
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
]
