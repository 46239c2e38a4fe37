"""Our side of a 1:1 interop conversation: one device with tidings.crypto's in-memory stores,
speaking the peer's JSON shapes (bundles and messages as base64)."""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

from libsignal_peer import b64, unb64

from tidings.crypto import (
    IdentityKey,
    IdentityKeyPair,
    KyberPublicKey,
    PreKeyBundle,
    PreKeySignalMessage,
    ProtocolAddress,
    PublicKey,
    SignalMessage,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)
from tidings.crypto.records import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from tidings.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

PREKEY = 3
WHISPER = 2


class OurDevice:
    """One of our devices."""

    def __init__(self, name: str, device_id: int = 1) -> None:
        self.address = ProtocolAddress(name, device_id)
        self.identity = IdentityKeyPair.generate()
        self.registration_id = secrets.randbelow(16000) + 1
        self.identity_store = InMemoryIdentityKeyStore(self.identity, self.registration_id)
        self.session_store = InMemorySessionStore()
        self.prekey_store = InMemoryPreKeyStore()
        self.signed_prekey_store = InMemorySignedPreKeyStore()
        self.kyber_prekey_store = InMemoryKyberPreKeyStore()
        self._ids = itertools.count(100)

    def json(self) -> dict[str, object]:
        return {"name": self.address.name, "device_id": self.address.device_id}

    def bundle(self, kyber: bool = True, one_time: bool = True) -> dict[str, Any]:
        """Fresh prekeys in our stores, published as the peer's bundle JSON."""
        now = int(time.time() * 1000)
        out: dict[str, Any] = {
            "registration_id": self.registration_id,
            "device_id": self.address.device_id,
            "prekey_id": None,
            "prekey": None,
            "identity_key": b64(self.identity.identity_key.serialize()),
            "kyber_prekey_id": None,
            "kyber_prekey": None,
            "kyber_prekey_signature": None,
        }
        if one_time:
            pk = PreKeyRecord.generate(next(self._ids))
            self.prekey_store.save_pre_key(pk.id, pk)
            out["prekey_id"] = pk.id
            out["prekey"] = b64(pk.public_key().serialize())
        spk = SignedPreKeyRecord.generate(next(self._ids), self.identity, now)
        self.signed_prekey_store.save_signed_pre_key(spk.id, spk)
        out["signed_prekey_id"] = spk.id
        out["signed_prekey"] = b64(spk.public_key().serialize())
        out["signed_prekey_signature"] = b64(spk.signature)
        if kyber:
            kpk = KyberPreKeyRecord.generate(next(self._ids), self.identity, now)
            self.kyber_prekey_store.save_kyber_pre_key(kpk.id, kpk)
            out["kyber_prekey_id"] = kpk.id
            out["kyber_prekey"] = b64(kpk.public_key().serialize())
            out["kyber_prekey_signature"] = b64(kpk.signature)
        return out

    def process_bundle(self, peer_address: ProtocolAddress, b: dict[str, Any]) -> None:
        has_kyber = b.get("kyber_prekey_id") is not None
        bundle = PreKeyBundle(
            registration_id=b["registration_id"],
            device_id=b["device_id"],
            pre_key_id=b["prekey_id"],
            pre_key_public=None
            if b["prekey"] is None
            else PublicKey.deserialize(unb64(b["prekey"])),
            signed_pre_key_id=b["signed_prekey_id"],
            signed_pre_key_public=PublicKey.deserialize(unb64(b["signed_prekey"])),
            signed_pre_key_signature=unb64(b["signed_prekey_signature"]),
            identity_key=IdentityKey.deserialize(unb64(b["identity_key"])),
            kyber_pre_key_id=b["kyber_prekey_id"] if has_kyber else None,
            kyber_pre_key_public=(
                KyberPublicKey.deserialize(unb64(b["kyber_prekey"])) if has_kyber else None
            ),
            kyber_pre_key_signature=unb64(b["kyber_prekey_signature"]) if has_kyber else None,
        )
        process_prekey_bundle(bundle, peer_address, self.session_store, self.identity_store)

    def encrypt(self, peer_address: ProtocolAddress, plaintext: bytes) -> dict[str, Any]:
        message = message_encrypt(plaintext, peer_address, self.session_store, self.identity_store)
        return {"type": int(message.type()), "body": b64(message.serialize())}

    def decrypt(self, peer_address: ProtocolAddress, message: dict[str, Any]) -> bytes:
        body = unb64(message["body"])
        if message["type"] == PREKEY:
            return message_decrypt_prekey(
                PreKeySignalMessage.deserialize(body),
                peer_address,
                self.session_store,
                self.identity_store,
                self.prekey_store,
                self.signed_prekey_store,
                self.kyber_prekey_store,
            )
        assert message["type"] == WHISPER
        return message_decrypt_signal(
            SignalMessage.deserialize(body), peer_address, self.session_store, self.identity_store
        )
