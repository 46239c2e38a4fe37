"""Sealing and opening: what turns content into ciphertext and back (docs/e2ee.md).

The sans-I/O encryption core of the client, a sibling of the delivery engine. Every call into
:mod:`tidings.crypto` the client makes is made here. :class:`EndToEnd` works on one device's
:class:`~tidings.client.keystore.KeyStore`; what needs the server is written as a generator
(:data:`Steps`) that *yields* a request and gets its answer sent back in:

- :class:`ClaimKeys` (answer: ``list[PreKeyBundles]``): claim bundles for these devices;
- :class:`FetchDevices` (answer: ``dict[str, list[int]]``): every member's device ids;
- :class:`LookupConversation` (answer: ``(kind, members)``): a conversation's kind and members;
- :class:`SendToDevices` (answer: the ``DeviceAccepted``): send a ``DeviceSend`` and wait for
  the server to queue it.

The driver (the runtime in the client, a dict in tests) performs the request and sends the
answer in, or throws :class:`RequestFailed` into the generator when it could not. So two
devices can be wired back to back in a test, and nothing here awaits, opens a socket or reads
a clock but the injected one.

Sending:

- Direct conversations: :meth:`EndToEnd.encrypt_direct` encrypts the content once per device of
  the peer and once per own other device (``Send.device_payloads``: address → type byte (2|3) ‖
  serialized message), claiming bundles for devices without a session first.
  :meth:`EndToEnd.apply_stale` takes a ``StaleDevices`` answer into account before the resend.
- Groups: Sender Keys. :meth:`EndToEnd.group_distribution` makes the ``DeviceSend`` messages
  that carry our current sender key to every device that lacks it; once the server accepted
  them (:meth:`EndToEnd.distributed`), :meth:`EndToEnd.encrypt_group` makes the shared
  payload (``0x07 ‖ SenderKeyMessage``) and the devices digest. :meth:`EndToEnd.rotate` drops
  our sender key of a group (a member left or was removed).

Sealing one outgoing message (:meth:`Sealer.seal`): the plaintext ``Send`` in, a
:class:`Sealed` ``Send`` (or :class:`Refused`: for good; or :class:`Later`: wait for the
engine's resend) out.

Receiving: :meth:`EndToEnd.open_envelope` and :meth:`EndToEnd.open_device_envelope` decrypt
(synchronously: no I/O is needed).
Every failure leaves the crypto state as it was (the library is transactional), is reported as
:class:`Failed`, and — for a pairwise failure — queues a session reset request to the
sender's device (:meth:`EndToEnd.take_resets`; the caller sends it with :meth:`reset_message`).
A group message whose sender key has not arrived yet is kept and released when it does.

Nothing here logs plaintext, keys or tokens.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import msgspec

from tidings.crypto import (
    DuplicateMessageError,
    IdentityKey,
    KyberPublicKey,
    NoSenderKeyStateError,
    PreKeyBundle,
    PreKeySignalMessage,
    ProtocolAddress,
    PublicKey,
    SenderKeyDistributionMessage,
    SignalMessage,
    SignalProtocolError,
    UntrustedIdentityError,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
    process_sender_key_distribution_message,
)
from tidings.crypto.fingerprint import NumericFingerprintGenerator
from tidings.protocol import (
    DeviceAccepted,
    DeviceEnvelope,
    DeviceSend,
    Envelope,
    Send,
    StaleDevices,
    decode_system_event,
)
from tidings.protocol import keys as wire
from tidings.protocol.digest import device_address
from tidings.protocol.digest import devices_digest as wire_digest

from ..keystore import KeyStore

log = logging.getLogger("tidings.client.e2ee")

#: first byte of a pairwise ciphertext: libsignal's message types
TYPE_WHISPER = 2
TYPE_PREKEY = 3
#: first byte of a group payload
TYPE_SENDER_KEY = 7
#: safety numbers: libsignal's NumericFingerprintGenerator with this many iterations
FINGERPRINT_ITERATIONS = 5200
FINGERPRINT_VERSION = 2
#: seconds between two reset requests to the same device
RESET_INTERVAL = 30.0
#: sender key distributions tried for one group message (a rotation may come in between)
DISTRIBUTION_TRIES = 3

_T = TypeVar("_T")


# ----------------------------------------------------------------------------- device content


class _DeviceContent(msgspec.Struct, tag_field="t", omit_defaults=True):
    """Plaintext of a DeviceSend message (inside the pairwise ciphertext)."""


class SenderKeyShare(_DeviceContent, tag="skdm"):
    """Our sender key of group ``conv``."""

    conv: str
    skdm: bytes


class SessionReset(_DeviceContent, tag="reset"):
    """The receiver could not decrypt something of ours: start a new session."""


DeviceContent = SenderKeyShare | SessionReset
_device_encoder = msgspec.msgpack.Encoder()
_device_decoder: msgspec.msgpack.Decoder[DeviceContent] = msgspec.msgpack.Decoder(DeviceContent)
_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class ClaimKeys:
    """``POST /v1/keys/claim``: one bundle per named device (empty list: every device).
    Answer: ``list[PreKeyBundles]``."""

    devices: Mapping[str, list[int]]


@dataclass(frozen=True, slots=True)
class FetchDevices:
    """``GET /v1/conversations/{conv}/devices``. Answer: account → current device ids."""

    conv_id: str


@dataclass(frozen=True, slots=True)
class LookupConversation:
    """The conversation's kind and members (local store, else REST). Answer:
    ``("direct" | "group", member account ids)``."""

    conv_id: str


@dataclass(frozen=True, slots=True)
class SendToDevices:
    """Put ``frame`` on the wire and wait until the server queued it. Answer: its
    ``DeviceAccepted``."""

    frame: DeviceSend


Request = ClaimKeys | FetchDevices | LookupConversation | SendToDevices
#: A computation that needs the server: yields requests, gets their answers, returns ``_T``.
Steps = Generator[Request, object, _T]


class RequestFailed(Exception):
    """Thrown into :data:`Steps` by the driver: the request could not be done. ``status`` is
    the HTTP status of a refusal (4xx), None when the server could not be asked (no
    connection, timeout, 5xx)."""

    def __init__(self, code: str, status: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


def _claim(devices: Mapping[str, list[int]]) -> Steps[list[wire.PreKeyBundles]]:
    answer = yield ClaimKeys(devices)
    return cast("list[wire.PreKeyBundles]", answer)


def _devices(conv_id: str) -> Steps[dict[str, list[int]]]:
    answer = yield FetchDevices(conv_id)
    return cast("dict[str, list[int]]", answer)


def _lookup(conv_id: str) -> Steps[tuple[str, frozenset[str]]]:
    answer = yield LookupConversation(conv_id)
    return cast("tuple[str, frozenset[str]]", answer)


def _device_send(frame: DeviceSend) -> Steps[DeviceAccepted]:
    answer = yield SendToDevices(frame)
    return cast("DeviceAccepted", answer)


def run_steps(steps: Steps[_T], answer: Callable[[Request], object]) -> _T:
    """Run ``steps`` to the end with a synchronous ``answer`` to each request (tests)."""
    reply: object = None
    while True:
        try:
            request = steps.send(reply)
        except StopIteration as done:
            return cast("_T", done.value)
        reply = answer(request)


class IdentityBlocked(Exception):
    """Sending stops: ``account_id``'s identity key changed after the user verified it."""

    code = "identity_changed"

    def __init__(self, account_id: str) -> None:
        super().__init__("identity_changed")
        self.account_id = account_id


class NoDevices(Exception):
    """A device we must encrypt to published no keys (or is gone)."""


class NotDistributed(Exception):
    """Our sender key changed (rotation) or some device lacks it: distribute again."""


@dataclass(frozen=True, slots=True)
class Opened:
    """Decrypted content bytes (``tidings.protocol.content``)."""

    plaintext: bytes


@dataclass(frozen=True, slots=True)
class Waiting:
    """A group message whose sender key has not arrived: kept, released later."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The ciphertext could not be decrypted; nothing changed."""

    reason: str


Decrypted = Opened | Waiting | Failed


@dataclass(frozen=True, slots=True)
class Distribution:
    """Our sender key ``distribution_id`` of ``conv``, encrypted to the devices lacking it."""

    conv: str
    distribution_id: uuid.UUID
    #: ``DeviceSend.messages``: address → pairwise ciphertext
    messages: dict[str, bytes]


@dataclass(slots=True)
class DeviceResult:
    """What a DeviceEnvelope did."""

    #: a distribution arrived: group envelopes (kept earlier) that decrypt now
    released: list[tuple[Envelope, bytes]] = field(default_factory=list)
    #: the envelope could not be decrypted
    undecryptable: bool = False


def address_text(address: ProtocolAddress) -> str:
    """The wire form ``<account>:<device>``."""
    return device_address(address.name, address.device_id)


def parse_address(text: str) -> ProtocolAddress:
    name, _, device = text.rpartition(":")
    return ProtocolAddress(name, int(device))


def devices_digest(addresses: Iterable[ProtocolAddress]) -> bytes:
    """``Send.devices_digest`` of these devices: the wire's own digest, so client and server
    cannot compute it differently."""
    return wire_digest(address_text(a) for a in addresses)


# ----------------------------------------------------------------------------- the layer


class EndToEnd:
    """Encryption and decryption of one device (account ``account_id``, ``device_id``)."""

    def __init__(
        self,
        keys: KeyStore,
        account_id: str,
        device_id: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.account_id = account_id
        self.device_id = device_id
        self.me = ProtocolAddress(account_id, device_id)
        self._clock = clock
        #: conversation → member accounts, as last learnt (members list, StaleDevices)
        self._members: dict[str, frozenset[str]] = {}
        self._resets_wanted: dict[ProtocolAddress, None] = {}
        self._last_reset: dict[ProtocolAddress, float] = {}

    # ------------------------------------------------------------------ membership

    def set_members(self, conv: str, members: Iterable[str]) -> None:
        """The conversation's members as the client's store knows them."""
        self._members[conv] = frozenset(members)

    def members(self, conv: str) -> frozenset[str] | None:
        return self._members.get(conv)

    def on_system(self, conv: str, payload: bytes) -> None:
        """A system envelope: a member leaving or removed means a new sender key, and the
        leaver gets nothing more from us."""
        try:
            event = decode_system_event(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if event.action in ("member_removed", "member_left"):
            self.rotate(conv)
            known = self._members.get(conv)
            if known is not None:
                self._members[conv] = known - set(event.members)
        elif event.action == "member_added":
            known = self._members.get(conv)
            if known is not None:
                self._members[conv] = known | set(event.members)

    def rotate(self, conv: str) -> None:
        """Our next group message in ``conv`` uses a new sender key (new distribution id)."""
        self.keys.drop_group_key(conv)

    # ------------------------------------------------------------------ devices and sessions

    def _targets(self, conv: str, members: Iterable[str]) -> Steps[list[ProtocolAddress]]:
        """Every device of every member except this one."""
        accounts = set(members) | {self.account_id}
        unknown = [a for a in accounts if self.keys.devices(a) is None]
        if unknown:
            current = yield from _devices(conv)
            for account, devices in current.items():
                self._set_devices(account, devices)
            for account in unknown:
                if account not in current:
                    self._set_devices(account, [])
        targets: list[ProtocolAddress] = []
        for account in sorted(accounts):
            for device in self.keys.devices(account) or []:
                address = ProtocolAddress(account, device)
                if address != self.me:
                    targets.append(address)
        return targets

    def _set_devices(self, account: str, devices: list[int]) -> None:
        for gone in self.keys.set_devices(account, devices):
            address = ProtocolAddress(account, gone)
            self.keys.delete_session(address)
            self.keys.forget_shared_device(account, gone)

    def check_sendable(self, accounts: Iterable[str]) -> None:
        """Raise :class:`IdentityBlocked` for the first account whose verified key changed."""
        for account in sorted(set(accounts)):
            known = self.keys.known_identity(account)
            if known is not None and known.blocked:
                raise IdentityBlocked(account)

    def ensure_sessions(self, addresses: Iterable[ProtocolAddress]) -> Steps[None]:
        """Claim and process a bundle for every address without a current session."""
        missing: dict[str, list[int]] = {}
        for address in addresses:
            if not self.keys.has_session(address):
                missing.setdefault(address.name, []).append(address.device_id)
        if not missing:
            return
        answers = yield from _claim(missing)
        got = self._start_sessions(answers, missing)
        for account, device_ids in missing.items():
            for device_id in device_ids:
                if ProtocolAddress(account, device_id) not in got:
                    raise NoDevices(f"{account}:{device_id} has no usable keys")

    def _start_sessions(
        self, answers: list[wire.PreKeyBundles], wanted: Mapping[str, list[int]]
    ) -> set[ProtocolAddress]:
        """Process the claimed bundles of the ``wanted`` devices into sessions; the addresses
        that got one.

        A bundle's signatures are checked before anything is learnt from it: an account's
        identity key is recorded only when at least one of its bundles verifies, so a bundle
        that does not (garbage from the server) changes nothing. A changed key of a verified
        contact is recorded and committed (the change, ``blocked``) before
        :class:`IdentityBlocked` is raised, so a later ``set_verified`` lets sending resume."""
        got: set[ProtocolAddress] = set()
        blocked: str | None = None
        with self.keys.transaction():
            for bundles in answers:
                try:
                    identity = IdentityKey.deserialize(bundles.identity_key)
                except (SignalProtocolError, ValueError):
                    log.warning("the identity key of %s does not parse", bundles.account_id)
                    continue
                checked: list[tuple[ProtocolAddress, PreKeyBundle]] = []
                for device in bundles.devices:
                    address = ProtocolAddress(bundles.account_id, device.device_id)
                    if address == self.me or device.device_id not in wanted.get(address.name, []):
                        continue
                    bundle = _verified_bundle(device, identity)
                    if bundle is None:
                        log.warning("a prekey bundle of %s does not verify", address)
                        continue
                    checked.append((address, bundle))
                if not checked:
                    continue
                self.keys.observe_identity(bundles.account_id, identity)
                self.keys.identity_checked(bundles.account_id)
                known = self.keys.known_identity(bundles.account_id)
                if known is not None and known.blocked:
                    blocked = blocked or bundles.account_id
                    continue
                for address, bundle in checked:
                    try:
                        process_prekey_bundle(bundle, address, self.keys, self.keys)
                    except UntrustedIdentityError:
                        blocked = blocked or address.name
                        break
                    except SignalProtocolError:
                        log.warning("a prekey bundle of %s does not verify", address)
                        continue
                    self.keys.forget_shared_device(address.name, address.device_id)
                    got.add(address)
        if blocked is not None:
            # after the commit: the change stays recorded, sending stops until verified again
            raise IdentityBlocked(blocked)
        return got

    def _encrypt_to(self, address: ProtocolAddress, plaintext: bytes) -> bytes:
        try:
            message = message_encrypt(plaintext, address, self.keys, self.keys)
        except UntrustedIdentityError:
            raise IdentityBlocked(address.name) from None
        return bytes((int(message.type()),)) + message.serialize()

    # ------------------------------------------------------------------ direct

    def encrypt_direct(
        self, conv: str, plaintext: bytes, members: Iterable[str] | None = None
    ) -> Steps[dict[str, bytes]]:
        """``Send.device_payloads`` for ``plaintext`` in the direct conversation ``conv``."""
        payloads = yield from self.encrypt_direct_many(conv, (plaintext,), members)
        return payloads[0]

    def encrypt_direct_many(
        self, conv: str, plaintexts: Sequence[bytes], members: Iterable[str] | None = None
    ) -> Steps[list[dict[str, bytes]]]:
        """:meth:`encrypt_direct` of each of ``plaintexts``, in order (a burst to one
        conversation): the members, their devices and sessions are looked at once, then each
        plaintext is encrypted to every device in turn, as one after the other would be. All
        or nothing: if one fails, nothing is returned (the sessions may have advanced past
        the keys of the others, which a receiver skips)."""
        accounts = yield from self._conv_members(conv, members)
        self.check_sendable(accounts - {self.account_id})
        targets = yield from self._targets(conv, accounts)
        if any(not self.keys.has_session(a) for a in targets):
            yield from self._ensure_or_refresh(conv, accounts, targets)
            targets = yield from self._targets(conv, accounts)
        named = [(address_text(a), a) for a in targets]
        with self.keys.sending(), self.keys.transaction():
            return [{name: self._encrypt_to(a, text) for name, a in named} for text in plaintexts]

    def _ensure_or_refresh(
        self, conv: str, accounts: frozenset[str], targets: list[ProtocolAddress]
    ) -> Steps[None]:
        """Sessions for every target; a device without keys makes us reload the device
        lists once (it may be gone)."""
        try:
            yield from self.ensure_sessions(targets)
        except NoDevices:
            current = yield from _devices(conv)
            for account, devices in current.items():
                self._set_devices(account, devices)
            yield from self.ensure_sessions((yield from self._targets(conv, accounts)))

    def _conv_members(self, conv: str, members: Iterable[str] | None) -> Steps[frozenset[str]]:
        """The conversation's accounts (ours included): ``members`` if given, else as last
        learnt, else as the server's device map says."""
        if members is not None:
            self._members[conv] = frozenset(members)
        known = self._members.get(conv)
        if known is None:
            current = yield from _devices(conv)
            for account, devices in current.items():
                self._set_devices(account, devices)
            known = self._members[conv] = frozenset(current)
        return known | {self.account_id}

    def apply_stale(self, frame: StaleDevices) -> None:
        """Take the server's device view: drop sessions of devices that are gone (and of
        ``extra``), remember the current devices (``missing`` get bundles on the resend)."""
        with self.keys.transaction():
            for account, devices in frame.devices.items():
                self._set_devices(account, devices)
            for text in frame.extra:
                address = parse_address(text)
                self.keys.delete_session(address)
            if frame.devices:
                old = self._members.get(frame.conv)
                current = frozenset(frame.devices)
                if old is not None and old - current:
                    self.rotate(frame.conv)  # someone left: nothing more for them
                self._members[frame.conv] = current

    # ------------------------------------------------------------------ groups

    def group_distribution(
        self, conv: str, members: Iterable[str] | None = None
    ) -> Steps[Distribution]:
        """The ``DeviceSend.messages`` carrying our current sender key of ``conv`` to every
        device that lacks it (none: everyone has it). Creates the key when needed."""
        accounts = yield from self._conv_members(conv, members)
        self.check_sendable(accounts - {self.account_id})
        targets = yield from self._targets(conv, accounts)
        distribution = self.keys.group_key(conv) or self.keys.new_group_key(conv)
        shared = self.keys.shared_with(conv, distribution)
        need = [a for a in targets if (a.name, a.device_id) not in shared]
        if not need:
            return Distribution(conv, distribution, {})
        yield from self._ensure_or_refresh(conv, accounts, need)
        targets = yield from self._targets(conv, accounts)
        shared = self.keys.shared_with(conv, distribution)
        need = [a for a in targets if (a.name, a.device_id) not in shared]
        with self.keys.transaction():
            skdm = create_sender_key_distribution_message(self.me, distribution, self.keys)
            content = _device_encoder.encode(SenderKeyShare(conv=conv, skdm=skdm.serialize()))
            messages = {address_text(a): self._encrypt_to(a, content) for a in need}
        return Distribution(conv, distribution, messages)

    def distributed(self, distribution: Distribution, unknown: Iterable[str] = ()) -> None:
        """The server accepted the ``distribution`` (``DeviceAccepted``); the devices in
        ``unknown`` do not exist any more."""
        gone = {parse_address(t) for t in unknown}
        with self.keys.transaction():
            for address in gone:
                devices = self.keys.devices(address.name) or []
                self._set_devices(address.name, [d for d in devices if d != address.device_id])
            done = [parse_address(t) for t in distribution.messages]
            self.keys.mark_shared(
                distribution.conv,
                distribution.distribution_id,
                [(a.name, a.device_id) for a in done if a not in gone],
            )

    def encrypt_group(
        self, conv: str, plaintext: bytes, members: Iterable[str] | None = None
    ) -> Steps[tuple[bytes, bytes]]:
        """(``Send.payload``, ``Send.devices_digest``) for ``plaintext`` in group ``conv``.
        Call after :meth:`group_distribution` went out and was accepted; raises
        :class:`NotDistributed` if a device still lacks our current sender key (a rotation
        or a new device came in between)."""
        accounts = yield from self._conv_members(conv, members)
        targets = yield from self._targets(conv, accounts)
        distribution = self.keys.group_key(conv)
        if distribution is None:
            if targets:
                raise NotDistributed(conv)
            distribution = self.keys.new_group_key(conv)
        shared = self.keys.shared_with(conv, distribution)
        if any((a.name, a.device_id) not in shared for a in targets):
            raise NotDistributed(conv)
        with self.keys.transaction():
            if self.keys.load_sender_key(self.me, distribution) is None:  # nobody to share with
                create_sender_key_distribution_message(self.me, distribution, self.keys)
            message = group_encrypt(self.keys, self.me, distribution, plaintext)
        return bytes((TYPE_SENDER_KEY,)) + message.serialize(), devices_digest(targets)

    # ------------------------------------------------------------------ receiving

    def open_envelope(self, env: Envelope) -> Decrypted | None:
        """Decrypt a conversation envelope. None when there is nothing to decrypt (a system
        envelope, or a payload already purged because this device acked it before)."""
        if env.kind == "system":
            self.on_system(env.conv, env.payload)
            return None
        sender = ProtocolAddress(env.sender, env.sender_device)
        if env.device_payload:
            return self._open_pairwise(sender, env.device_payload)
        if not env.payload:
            return None
        if env.payload[0] != TYPE_SENDER_KEY:
            return Failed("not_encrypted")
        try:
            with self.keys.transaction():
                return Opened(group_decrypt(env.payload[1:], self.keys, sender))
        except NoSenderKeyStateError:
            self.keys.keep_pending(
                env.conv, env.id, env.sender, env.sender_device, _envelope_encoder.encode(env)
            )
            return Waiting()
        except DuplicateMessageError:
            return Failed("duplicate")
        except SignalProtocolError:
            return Failed("bad_group_message")

    def _open_pairwise(self, sender: ProtocolAddress, data: bytes) -> Decrypted:
        try:
            with self.keys.transaction():
                plaintext, fresh = self._decrypt_pairwise(sender, data)
        except DuplicateMessageError:
            return Failed("duplicate")
        except (SignalProtocolError, ValueError):
            self._want_reset(sender)
            return Failed("bad_message")
        if fresh:
            # a new session: that device may have lost our sender keys as well
            self.keys.forget_shared_device(sender.name, sender.device_id)
        return Opened(plaintext)

    def _decrypt_pairwise(self, sender: ProtocolAddress, data: bytes) -> tuple[bytes, bool]:
        if len(data) < 2:
            raise ValueError("too short")
        kind, body = data[0], data[1:]
        if kind == TYPE_PREKEY:
            before = self.keys.load_session(sender)
            base = before.alice_base_key() if before and before.has_current_state() else None
            message = PreKeySignalMessage.deserialize(body)
            plaintext = message_decrypt_prekey(
                message, sender, self.keys, self.keys, self.keys, self.keys, self.keys
            )
            after = self.keys.load_session(sender)
            fresh = after is None or not after.has_current_state() or after.alice_base_key() != base
            return plaintext, fresh
        if kind == TYPE_WHISPER:
            signal = SignalMessage.deserialize(body)
            return message_decrypt_signal(signal, sender, self.keys, self.keys), False
        raise ValueError("unknown message type")

    def open_device_envelope(self, env: DeviceEnvelope) -> DeviceResult:
        """Decrypt a message to this device: a sender key distribution (processed; group
        messages that waited for it are released) or a session reset request (our session
        with the sender is archived, so our next message starts a new one)."""
        result = DeviceResult()
        sender = ProtocolAddress(env.sender, env.sender_device)
        opened = self._open_pairwise(sender, env.payload)
        if not isinstance(opened, Opened):
            result.undecryptable = isinstance(opened, Failed) and opened.reason != "duplicate"
            return result
        try:
            content = _device_decoder.decode(opened.plaintext)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return result
        match content:
            case SessionReset():
                # our next message to that device starts a new session (a PreKey message)
                self.keys.archive_session(sender)
            case SenderKeyShare():
                self._take_distribution(sender, content, result)
        return result

    def _take_distribution(
        self, sender: ProtocolAddress, share: SenderKeyShare, result: DeviceResult
    ) -> None:
        try:
            skdm = SenderKeyDistributionMessage.deserialize(share.skdm)
            with self.keys.transaction():
                process_sender_key_distribution_message(sender, skdm, self.keys)
        except SignalProtocolError:
            return
        for _, raw in self.keys.pending_from(sender.name, sender.device_id):
            env = _envelope_decoder.decode(raw)
            try:
                with self.keys.transaction():
                    plaintext = group_decrypt(env.payload[1:], self.keys, sender)
                    self.keys.drop_pending(env.conv, env.sender, env.id)
            except NoSenderKeyStateError:
                continue  # a key of another distribution: keep waiting
            except SignalProtocolError:
                self.keys.drop_pending(env.conv, env.sender, env.id)
                continue
            result.released.append((env, plaintext))

    # ------------------------------------------------------------------ session resets

    def _want_reset(self, address: ProtocolAddress) -> None:
        now = self._clock()
        last = self._last_reset.get(address)
        if last is not None and now - last < RESET_INTERVAL:
            return
        self._last_reset[address] = now
        self._resets_wanted[address] = None

    def take_resets(self) -> list[ProtocolAddress]:
        """Devices that should get a reset request (rate-limited per device)."""
        wanted = list(self._resets_wanted)
        self._resets_wanted.clear()
        return wanted

    def reset_message(self, address: ProtocolAddress) -> Steps[dict[str, bytes]]:
        """``DeviceSend.messages`` asking ``address`` to start over: our session with it is
        archived first, so the request itself starts a new session (a PreKey message) that the
        other side can decrypt whatever state it is in."""
        self.keys.archive_session(address)
        yield from self.ensure_sessions([address])
        content = _device_encoder.encode(SessionReset())
        with self.keys.transaction():
            return {address_text(address): self._encrypt_to(address, content)}

    # ------------------------------------------------------------------ identity

    def safety_number(self, account_id: str) -> str:
        """The 60-digit safety number shared with ``account_id`` (equal on both sides)."""
        known = self.keys.known_identity(account_id)
        if known is None:
            raise LookupError("no identity key known for this account")
        ours = self.keys.get_identity_key_pair().identity_key
        fingerprint = NumericFingerprintGenerator(FINGERPRINT_ITERATIONS).create_for(
            FINGERPRINT_VERSION,
            self.account_id.encode(),
            ours,
            account_id.encode(),
            known.identity_key,
        )
        return fingerprint.display_string()

    def learn_identity(self, account_id: str) -> Steps[None]:
        """Make sure the identity key of ``account_id`` is known: if not, claim the bundles of
        its devices and start sessions with them (so no claimed prekey goes to waste)."""
        if self.keys.known_identity(account_id) is not None:
            return
        answers = yield from _claim({account_id: []})
        found = [d.device_id for b in answers if b.account_id == account_id for d in b.devices]
        with self.keys.transaction():
            self._set_devices(account_id, found)
            self._start_sessions(answers, {account_id: found})


def _verified_bundle(device: wire.DeviceBundle, identity: IdentityKey) -> PreKeyBundle | None:
    """The bundle of ``device`` if it parses and both prekey signatures verify with
    ``identity``; None otherwise."""
    try:
        bundle = _bundle(device, identity)
    except (SignalProtocolError, ValueError):
        return None
    kyber = bundle.kyber_pre_key_public
    if not identity.verify_signature(
        bundle.signed_pre_key_public.serialize(), bundle.signed_pre_key_signature
    ):
        return None
    if kyber is not None and not identity.verify_signature(
        kyber.serialize(), bundle.kyber_pre_key_signature or b""
    ):
        return None
    return bundle


def _bundle(device: wire.DeviceBundle, identity: IdentityKey) -> PreKeyBundle:
    prekey = device.prekey
    return PreKeyBundle(
        registration_id=device.registration_id,
        device_id=device.device_id,
        pre_key_id=None if prekey is None else prekey.id,
        pre_key_public=None if prekey is None else PublicKey.deserialize(prekey.key),
        signed_pre_key_id=device.signed_prekey.id,
        signed_pre_key_public=PublicKey.deserialize(device.signed_prekey.key),
        signed_pre_key_signature=device.signed_prekey.signature,
        identity_key=identity,
        kyber_pre_key_id=device.kyber_prekey.id,
        kyber_pre_key_public=KyberPublicKey.deserialize(device.kyber_prekey.key),
        kyber_pre_key_signature=device.kyber_prekey.signature,
    )


# ----------------------------------------------------------------------------- one message


@dataclass(frozen=True, slots=True)
class Sealed:
    """The encrypted ``Send``, ready for the wire."""

    send: Send


@dataclass(frozen=True, slots=True)
class Refused:
    """The message can never be sealed (``code``: ``identity_changed``, or why the server
    refused to help: not a member any more): it fails like a ``Rejected``."""

    code: str


@dataclass(frozen=True, slots=True)
class Later:
    """The message cannot be sealed now (no connection, the server is busy, a device has no
    keys yet): it waits for the engine's resend."""

    reason: str


SealOutcome = Sealed | Refused | Later
#: what sealing one message may raise (:func:`_unsealed` says what becomes of it)
_SEAL_ERRORS = (IdentityBlocked, RequestFailed, NoDevices, NotDistributed, SignalProtocolError)


def _unsealed(exc: Exception) -> Refused | Later:
    """The outcome of a message whose sealing raised ``exc`` (one of :data:`_SEAL_ERRORS`)."""
    if isinstance(exc, IdentityBlocked):
        return Refused(exc.code)
    if isinstance(exc, RequestFailed):
        return Refused(exc.code) if exc.status in (403, 404) else Later(exc.code)
    return Later(type(exc).__name__)


class Sealer:
    """The outgoing half: a ``Send`` whose payload is content bytes in, its encrypted form out
    (``device_payloads`` for a direct conversation; for a group, first the Sender Key
    distribution as a ``DeviceSend``, then the shared payload and the devices digest). Each
    transmission is sealed afresh, so a resend after ``StaleDevices`` or a timeout always
    matches the current sessions; the server keeps only the first stored copy of an id."""

    def __init__(self, e2ee: EndToEnd) -> None:
        self.e2ee = e2ee
        #: conversation → "direct" | "group" (a conversation never changes its kind)
        self._kinds: dict[str, str] = {}

    def seal(self, frame: Send) -> Steps[SealOutcome]:
        """What becomes of ``frame``. Decides which failures are for good: a verified
        contact's changed identity, and the server refusing with 403/404 (not a member any
        more, no such conversation); anything else waits for the resend."""
        try:
            sealed = yield from self._seal(frame)
        except _SEAL_ERRORS as exc:
            return _unsealed(exc)
        return Sealed(sealed)

    def seal_all(self, frames: Sequence[Send]) -> Steps[list[SealOutcome]]:
        """What becomes of each of ``frames``, in order: the same as :meth:`seal` one after
        the other. A run of frames to one direct conversation is encrypted together
        (:meth:`EndToEnd.encrypt_direct_many`); if that fails, each of them is sealed on its
        own, so each gets the outcome it would have got alone."""
        outcomes: list[SealOutcome] = []
        start, count = 0, len(frames)
        while start < count:
            conv_id = frames[start].conv
            end = start + 1
            while end < count and frames[end].conv == conv_id:
                end += 1
            run = frames[start:end]
            if len(run) > 1 and self._kinds.get(conv_id) == "direct":
                try:
                    outcomes += yield from self._seal_direct(run)
                    start = end
                    continue
                except _SEAL_ERRORS:
                    pass  # one by one below, each with the outcome it gets alone
            for frame in run:
                outcomes.append((yield from self.seal(frame)))
            start = end
        return outcomes

    def _seal_direct(self, run: Sequence[Send]) -> Steps[list[SealOutcome]]:
        """Seal frames of one direct conversation (its kind known) together."""
        conv_id = run[0].conv
        if self.e2ee.members(conv_id) is None:
            _, members = yield from _lookup(conv_id)
            if self.e2ee.members(conv_id) is None:
                self.e2ee.set_members(conv_id, members)
        many = yield from self.e2ee.encrypt_direct_many(conv_id, [f.payload for f in run])
        return [
            Sealed(self._direct(frame, payloads)) for frame, payloads in zip(run, many, strict=True)
        ]

    @staticmethod
    def _direct(frame: Send, payloads: dict[str, bytes]) -> Send:
        """``frame`` sealed for a direct conversation with these ``device_payloads``."""
        if not payloads:  # note to self on the account's only device
            return msgspec.structs.replace(frame, payload=b"", devices_digest=devices_digest(()))
        return msgspec.structs.replace(frame, payload=b"", device_payloads=payloads)

    def _seal(self, frame: Send) -> Steps[Send]:
        conv_id = frame.conv
        kind = self._kinds.get(conv_id)
        if kind is None or self.e2ee.members(conv_id) is None:
            kind, members = yield from _lookup(conv_id)
            self._kinds[conv_id] = kind
            if self.e2ee.members(conv_id) is None:
                self.e2ee.set_members(conv_id, members)
        if kind == "direct":
            payloads = yield from self.e2ee.encrypt_direct(conv_id, frame.payload)
            return self._direct(frame, payloads)
        for _ in range(DISTRIBUTION_TRIES - 1):
            yield from self._distribute(conv_id)
            try:
                payload, digest = yield from self.e2ee.encrypt_group(conv_id, frame.payload)
            except NotDistributed:
                continue  # rotated while we waited for DeviceAccepted
            return msgspec.structs.replace(frame, payload=payload, devices_digest=digest)
        yield from self._distribute(conv_id)
        payload, digest = yield from self.e2ee.encrypt_group(conv_id, frame.payload)
        return msgspec.structs.replace(frame, payload=payload, devices_digest=digest)

    def _distribute(self, conv_id: str) -> Steps[None]:
        distribution = yield from self.e2ee.group_distribution(conv_id)
        if distribution.messages:
            frame = DeviceSend(id=uuid.uuid4(), messages=dict(distribution.messages))
            accepted = yield from _device_send(frame)
            self.e2ee.distributed(distribution, accepted.unknown)

    def send_resets(self) -> Steps[None]:
        """Ask every device whose message we could not decrypt to start a new session."""
        for address in self.e2ee.take_resets():
            try:
                messages = yield from self.e2ee.reset_message(address)
                yield from _device_send(DeviceSend(id=uuid.uuid4(), messages=messages))
            except (RequestFailed, NoDevices, IdentityBlocked, SignalProtocolError) as exc:
                # the next undecryptable message asks again
                log.info("a session reset request failed: %s", type(exc).__name__)
