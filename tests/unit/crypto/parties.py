"""A device with in-memory stores, for the crypto unit tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tidings.crypto import (
    IdentityKeyPair,
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    PreKeySignalMessage,
    ProtocolAddress,
    SignalMessage,
    SignedPreKeyRecord,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)

_ids = itertools.count(1)


@dataclass
class Party:
    """One device with its stores."""

    name: str
    device_id: int = 1
    identity: IdentityKeyPair = field(default_factory=IdentityKeyPair.generate)
    registration_id: int = field(default_factory=lambda: next(_ids))
    sessions: InMemorySessionStore = field(default_factory=InMemorySessionStore)
    prekeys: InMemoryPreKeyStore = field(default_factory=InMemoryPreKeyStore)
    signed_prekeys: InMemorySignedPreKeyStore = field(default_factory=InMemorySignedPreKeyStore)
    kyber_prekeys: InMemoryKyberPreKeyStore = field(default_factory=InMemoryKyberPreKeyStore)
    identities: InMemoryIdentityKeyStore = field(init=False)

    def __post_init__(self) -> None:
        self.identities = InMemoryIdentityKeyStore(self.identity, self.registration_id)

    @property
    def address(self) -> ProtocolAddress:
        return ProtocolAddress(self.name, self.device_id)

    def bundle(self, *, kyber: bool = True, one_time: bool = True) -> PreKeyBundle:
        """Publish fresh prekeys and return the bundle a server would hand out."""
        signed = SignedPreKeyRecord.generate(next(_ids), self.identity, 1_700_000_000_000)
        self.signed_prekeys.save_signed_pre_key(signed.id, signed)
        pre_key = None
        if one_time:
            pre_key = PreKeyRecord.generate(next(_ids))
            self.prekeys.save_pre_key(pre_key.id, pre_key)
        kyber_record = None
        if kyber:
            kyber_record = KyberPreKeyRecord.generate(next(_ids), self.identity, 1_700_000_000_000)
            self.kyber_prekeys.save_kyber_pre_key(kyber_record.id, kyber_record)
        return PreKeyBundle(
            registration_id=self.registration_id,
            device_id=self.device_id,
            pre_key_id=pre_key.id if pre_key else None,
            pre_key_public=pre_key.public_key() if pre_key else None,
            signed_pre_key_id=signed.id,
            signed_pre_key_public=signed.public_key(),
            signed_pre_key_signature=signed.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=kyber_record.id if kyber_record else None,
            kyber_pre_key_public=kyber_record.public_key() if kyber_record else None,
            kyber_pre_key_signature=kyber_record.signature if kyber_record else None,
        )

    def start_session(self, other: Party, *, kyber: bool = True, now: float | None = None) -> None:
        process_prekey_bundle(
            other.bundle(kyber=kyber), other.address, self.sessions, self.identities, now=now
        )

    def encrypt(self, other: Party, text: bytes, now: float | None = None) -> bytes:
        """Encrypt for ``other``; the wire bytes with the type in front (3 PreKey / 2 Whisper)."""
        message = message_encrypt(text, other.address, self.sessions, self.identities, now=now)
        return bytes((int(message.type()),)) + message.serialize()

    def decrypt(self, other: Party, wire: bytes) -> bytes:
        kind, data = wire[0], wire[1:]
        if kind == 3:
            return message_decrypt_prekey(
                PreKeySignalMessage.deserialize(data),
                other.address,
                self.sessions,
                self.identities,
                self.prekeys,
                self.signed_prekeys,
                self.kyber_prekeys,
            )
        return message_decrypt_signal(
            SignalMessage.deserialize(data), other.address, self.sessions, self.identities
        )

    def stored(self, other: Party) -> bytes | None:
        return self.sessions.load_serialized(other.address)
