"""Devices of several accounts wired back to back through an in-memory key directory.

:class:`Directory` plays the server's key directory and device bookkeeping: it keeps what each
device uploaded, hands out each one-time prekey once, and knows which accounts are in which
conversation. :class:`Device` is one device: a profile database with its :class:`KeyStore` and
:class:`EndToEnd`. Helpers turn what one device sends into what the others receive.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings.client.core.sealing import (
    ClaimKeys,
    EndToEnd,
    FetchDevices,
    Request,
    Steps,
    parse_address,
    run_steps,
)
from tidings.client.keystore import KeyStore
from tidings.crypto import IdentityKeyPair
from tidings.protocol import DeviceEnvelope, Envelope
from tidings.protocol import keys as wire


@dataclass
class _Published:
    registration_id: int
    signed: wire.SignedPreKey
    last_resort: wire.KyberPreKey
    prekeys: list[wire.OneTimePreKey] = field(default_factory=list)
    kyber: list[wire.KyberPreKey] = field(default_factory=list)


class Directory:
    """The server side, in memory."""

    def __init__(self) -> None:
        self.identity: dict[str, bytes] = {}
        self.published: dict[tuple[str, int], _Published] = {}
        self.conversations: dict[str, set[str]] = {}
        self.claims = 0
        self._seq = itertools.count(1)

    def upload(self, account: str, device: int, body: wire.KeyUpload) -> wire.KeyCounts:
        if body.replace_identity or account not in self.identity:
            self.identity[account] = body.identity_key
        assert self.identity[account] == body.identity_key
        old = self.published.get((account, device))
        if old is None:
            assert body.signed_prekey is not None and body.kyber_last_resort is not None
            old = _Published(body.registration_id, body.signed_prekey, body.kyber_last_resort)
            self.published[(account, device)] = old
        if body.signed_prekey is not None:
            old.signed = body.signed_prekey
        if body.kyber_last_resort is not None:
            old.last_resort = body.kyber_last_resort
        old.prekeys += body.prekeys
        old.kyber += body.kyber_prekeys
        return self.counts(account, device)

    def counts(self, account: str, device: int) -> wire.KeyCounts:
        pub = self.published[(account, device)]
        return wire.KeyCounts(
            prekeys=len(pub.prekeys), kyber_prekeys=len(pub.kyber), signed_prekey_id=pub.signed.id
        )

    def devices_of(self, account: str) -> list[int]:
        return sorted(d for (a, d) in self.published if a == account)

    def remove_device(self, account: str, device: int) -> None:
        del self.published[(account, device)]

    def claim(self, devices: Mapping[str, list[int]]) -> list[wire.PreKeyBundles]:
        self.claims += 1
        answers = []
        for account, wanted in devices.items():
            bundles = []
            for device in wanted or self.devices_of(account):
                pub = self.published.get((account, device))
                if pub is None:
                    continue
                prekey = pub.prekeys.pop(0) if pub.prekeys else None
                kyber = pub.kyber.pop(0) if pub.kyber else pub.last_resort
                bundles.append(
                    wire.DeviceBundle(
                        device_id=device,
                        registration_id=pub.registration_id,
                        signed_prekey=pub.signed,
                        kyber_prekey=kyber,
                        prekey=prekey,
                        kyber_is_last_resort=kyber is pub.last_resort,
                    )
                )
            if bundles:
                answers.append(
                    wire.PreKeyBundles(
                        account_id=account, identity_key=self.identity[account], devices=bundles
                    )
                )
        return answers

    def device_map(self, conv: str) -> dict[str, list[int]]:
        return {a: self.devices_of(a) for a in sorted(self.conversations.get(conv, set()))}

    def next_seq(self) -> int:
        return next(self._seq)


def answer(directory: Directory) -> Callable[[Request], object]:
    """Answers the sealing core's key directory requests from ``directory``."""

    def reply(request: Request) -> object:
        if isinstance(request, ClaimKeys):
            return directory.claim(request.devices)
        if isinstance(request, FetchDevices):
            return directory.device_map(request.conv_id)
        raise AssertionError(f"unexpected request {request}")

    return reply


class Driven:
    """A device's :class:`EndToEnd` with its requests answered by the in-memory directory,
    so a test can ``await`` what needs the server; everything else is the core itself."""

    def __init__(self, core: EndToEnd, directory: Directory) -> None:
        self.core = core
        self._answer = answer(directory)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    def run(self, steps: Steps[Any]) -> Any:
        return run_steps(steps, self._answer)

    async def encrypt_direct(self, *args: Any) -> dict[str, bytes]:
        return self.run(self.core.encrypt_direct(*args))  # type: ignore[no-any-return]

    async def group_distribution(self, *args: Any) -> Any:
        return self.run(self.core.group_distribution(*args))

    async def encrypt_group(self, *args: Any) -> tuple[bytes, bytes]:
        return self.run(self.core.encrypt_group(*args))  # type: ignore[no-any-return]

    async def reset_message(self, *args: Any) -> dict[str, bytes]:
        return self.run(self.core.reset_message(*args))  # type: ignore[no-any-return]

    async def learn_identity(self, *args: Any) -> None:
        self.run(self.core.learn_identity(*args))

    async def ensure_sessions(self, *args: Any) -> None:
        self.run(self.core.ensure_sessions(*args))


class Device:
    def __init__(
        self,
        directory: Directory,
        account: str,
        device_id: int,
        identity: IdentityKeyPair | None = None,
    ) -> None:
        self.account = account
        self.device_id = device_id
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.keys = KeyStore(self.db)
        self.keys.set_identity(identity or IdentityKeyPair.generate())
        self.directory = directory
        directory.upload(account, device_id, self.keys.initial_upload())
        self.e2ee = Driven(EndToEnd(self.keys, account, device_id), directory)

    @property
    def address(self) -> str:
        return f"{self.account}:{self.device_id}"


def envelope_for(
    sender: Device, conv: str, target: str, payloads: dict[str, bytes], msg_id: uuid.UUID
) -> Envelope:
    """The envelope device ``target`` receives for a direct Send with ``payloads``."""
    return Envelope(
        conv=conv,
        seq=1,
        id=msg_id,
        sender=sender.account,
        sender_device=sender.device_id,
        ts=0,
        payload=b"",
        device_payload=payloads[target],
    )


def group_envelope(sender: Device, conv: str, payload: bytes, seq: int = 1) -> Envelope:
    return Envelope(
        conv=conv,
        seq=seq,
        id=uuid.uuid4(),
        sender=sender.account,
        sender_device=sender.device_id,
        ts=0,
        payload=payload,
    )


def device_envelopes(sender: Device, messages: dict[str, bytes]) -> dict[str, DeviceEnvelope]:
    """What each addressed device receives for a DeviceSend with ``messages``."""
    out = {}
    for dseq, (target, data) in enumerate(sorted(messages.items()), start=1):
        parse_address(target)
        out[target] = DeviceEnvelope(
            dseq=dseq,
            id=uuid.uuid4(),
            sender=sender.account,
            sender_device=sender.device_id,
            ts=0,
            payload=data,
        )
    return out
