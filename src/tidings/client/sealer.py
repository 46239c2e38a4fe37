"""The outgoing half of end-to-end encryption: plaintext ``Send`` in, encrypted ``Send`` out.

The engine's outbox holds content bytes (the local database has the plaintext anyway); right
before a ``Send`` goes on the wire, :meth:`Sealer.seal` encrypts it for its conversation:
``device_payloads`` for a direct conversation; for a group, first the Sender Key distribution
as a ``DeviceSend`` (waiting for ``DeviceAccepted``), then the shared payload and the devices
digest. Each transmission is encrypted afresh, so a resend after ``StaleDevices`` or a timeout
always matches the current sessions; the server keeps only the first stored copy of an id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from tidings.protocol import ClientFrame, DeviceAccepted, DeviceSend, Send

from .e2ee import EndToEnd, NotDistributed

log = logging.getLogger("tidings.client.e2ee")

#: seconds to wait for DeviceAccepted before the message waits for its next resend
DEVICE_SEND_TIMEOUT = 10.0
#: sender key distributions tried for one group message (a rotation may come in between)
DISTRIBUTION_TRIES = 3

#: conversation id → (kind "direct" | "group", member account ids)
ConversationLookup = Callable[[str], Awaitable[tuple[str, frozenset[str]]]]
#: puts a frame on the wire; False when there is no connection
Transmit = Callable[[ClientFrame], Awaitable[bool]]


class Sealer:
    def __init__(self, e2ee: EndToEnd, lookup: ConversationLookup, transmit: Transmit) -> None:
        self.e2ee = e2ee
        self._lookup = lookup
        self._transmit = transmit
        self._waiting: dict[uuid.UUID, asyncio.Future[DeviceAccepted]] = {}
        #: conversation → "direct" | "group" (a conversation never changes its kind)
        self._kinds: dict[str, str] = {}

    async def seal(self, frame: Send) -> Send:
        """The encrypted form of a ``Send`` whose payload is content bytes. Raises
        :class:`~tidings.client.e2ee.IdentityBlocked`, or a ``ClientError``/``TimeoutError``
        when the server cannot help right now (the engine resends later)."""
        kind = self._kinds.get(frame.conv)
        if kind is None or self.e2ee.members(frame.conv) is None:
            kind, members = await self._lookup(frame.conv)
            self._kinds[frame.conv] = kind
            if self.e2ee.members(frame.conv) is None:
                self.e2ee.set_members(frame.conv, members)
        if kind == "direct":
            payloads = await self.e2ee.encrypt_direct(frame.conv, frame.payload)
            return msgspec.structs.replace(frame, payload=b"", device_payloads=payloads)
        for _ in range(DISTRIBUTION_TRIES - 1):
            await self._distribute(frame.conv)
            try:
                payload, digest = await self.e2ee.encrypt_group(frame.conv, frame.payload)
            except NotDistributed:
                continue  # rotated while we waited for DeviceAccepted
            return msgspec.structs.replace(frame, payload=payload, devices_digest=digest)
        await self._distribute(frame.conv)
        payload, digest = await self.e2ee.encrypt_group(frame.conv, frame.payload)
        return msgspec.structs.replace(frame, payload=payload, devices_digest=digest)

    async def _distribute(self, conv: str) -> None:
        distribution = await self.e2ee.group_distribution(conv)
        if distribution.messages:
            accepted = await self.device_send(distribution.messages)
            self.e2ee.distributed(distribution, accepted.unknown)

    async def device_send(self, messages: Mapping[str, bytes]) -> DeviceAccepted:
        """Send to single devices and wait until the server queued them."""
        frame = DeviceSend(id=uuid.uuid4(), messages=dict(messages))
        future: asyncio.Future[DeviceAccepted] = asyncio.get_running_loop().create_future()
        self._waiting[frame.id] = future
        try:
            if not await self._transmit(frame):
                raise TimeoutError("no connection")
            return await asyncio.wait_for(future, DEVICE_SEND_TIMEOUT)
        finally:
            self._waiting.pop(frame.id, None)

    def device_accepted(self, frame: DeviceAccepted) -> None:
        future = self._waiting.get(frame.id)
        if future is not None and not future.done():
            future.set_result(frame)

    async def send_resets(self) -> None:
        """Ask every device whose message we could not decrypt to start a new session."""
        for address in self.e2ee.take_resets():
            try:
                messages = await self.e2ee.reset_message(address)
                await self.device_send(messages)
            except Exception as exc:  # the next undecryptable message asks again
                log.info("a session reset request failed: %s", type(exc).__name__)
