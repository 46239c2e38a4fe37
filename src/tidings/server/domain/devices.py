"""Rules about devices: whether a Send names the right ones (docs/e2ee.md), and which devices a
to-device message may reach.

Pure functions of data a store has fetched; the store writes nothing when they refuse.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Collection, Mapping, Sequence

from tidings.protocol import ErrorCode
from tidings.protocol.digest import device_address, devices_digest
from tidings.server.domain.records import ConversationKind, NewMessage, Refused, StaleDeviceList

#: (account, device)
DeviceKey = tuple[str, int]


def check_device_list(
    kind: ConversationKind, message: NewMessage, devices: Mapping[str, Sequence[int]]
) -> None:
    """Raise unless the Send covers exactly the recipient devices: every device with keys of
    every member (``devices``, as :meth:`Store.device_map` gives it) except the sending one.

    A direct conversation takes one ciphertext per device (``device_payloads``); a mismatch
    raises :class:`StaleDeviceList` with the missing and extra addresses. A group takes the
    digest of the sender's view; a mismatch raises it with ``devices`` only. Payloads of the
    wrong shape for the kind are ``Refused(BAD_FRAME)``.
    """
    me = device_address(message.sender, message.sender_device)
    current = {device_address(a, d) for a, ids in devices.items() for d in ids} - {me}
    stale = {account: list(ids) for account, ids in devices.items()}
    if kind == "direct":
        if (
            not message.device_payloads
            and message.devices_digest
            and set(devices) <= {message.sender}
        ):
            # note to self (the account is the only member) from its only device: nobody to
            # encrypt to, and the digest of no device at all says the sender knows it
            if current or not hmac.compare_digest(devices_digest(()), message.devices_digest):
                raise StaleDeviceList(sorted(current), [], stale)
            return
        if not message.device_payloads:
            raise Refused(ErrorCode.BAD_FRAME, "a direct conversation takes device_payloads")
        given = {device_address(a, d) for (a, d), _ in message.device_payloads}
        if given != current:
            raise StaleDeviceList(sorted(current - given), sorted(given - current), stale)
        return
    if message.device_payloads:
        raise Refused(ErrorCode.BAD_FRAME, "device_payloads are for direct conversations")
    if not hmac.compare_digest(devices_digest(current), message.devices_digest):
        raise StaleDeviceList([], [], stale)


def may_reach(sender: str, account: str, shares_conversation: bool) -> bool:
    """Whether ``sender`` may send to-device messages to ``account``'s devices: its own, or an
    account it shares at least one conversation with."""
    return account == sender or shares_conversation


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSendPlan:
    """Which messages of a DeviceSend to queue (in the order given) and which addresses to
    refuse as ``unknown`` (sorted)."""

    deliver: tuple[tuple[DeviceKey, bytes], ...]
    unknown: tuple[str, ...]


def plan_device_send(
    sender: DeviceKey,
    messages: Sequence[tuple[str, DeviceKey, bytes]],
    contacts: Collection[str],
    keyed: Collection[DeviceKey],
) -> DeviceSendPlan:
    """Sort a DeviceSend's ``(address, (account, device), payload)`` messages: a message is
    delivered to a device that has keys (``keyed``), is not the sending device, and belongs to
    the sender's account or to one of its ``contacts`` (the accounts sharing a conversation
    with it). The rest are refused."""
    deliver: list[tuple[DeviceKey, bytes]] = []
    unknown: list[str] = []
    for text, target, payload in messages:
        account = target[0]
        reachable = may_reach(sender[0], account, account in contacts) and target != sender
        if reachable and target in keyed:
            deliver.append((target, payload))
        else:
            unknown.append(text)
    return DeviceSendPlan(tuple(deliver), tuple(sorted(unknown)))
