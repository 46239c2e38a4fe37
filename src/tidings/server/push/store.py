"""What push notifications need from the server's store (one protocol beside the main
:class:`~tidings.server.store.base.Store`; the SQLite store implements both).

Guarantees: a registration belongs to one device and is only ever read or changed through
that device's own account and device id (the REST handlers pass the caller's); it is deleted
with the device (removal, identity replacement). Notification levels belong to an account.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Protocol

from tidings.protocol.push import NotifyLevel, PushPlatform


@dataclasses.dataclass(frozen=True, slots=True)
class StoredRegistration:
    account_id: str
    device_id: int
    platform: PushPlatform
    token: str
    p256dh: str = ""
    auth: str = ""
    topic: str = ""
    updated_at: int = 0

    def __repr__(self) -> str:  # the token addresses the device: keep it out of logs
        return f"StoredRegistration({self.account_id}:{self.device_id}, {self.platform})"


@dataclasses.dataclass(frozen=True, slots=True)
class NotifySetting:
    level: NotifyLevel = "all"
    #: ms since the epoch; None: not muted
    muted_until: int | None = None


DEFAULT_SETTING = NotifySetting()

#: the registration columns, in the order :func:`registration_from_row` reads them
REGISTRATION_COLUMNS = "account_id, device_id, platform, token, p256dh, auth, topic, updated_at"


def registration_from_row(row: Iterable[object]) -> StoredRegistration:
    """A stored registration from a database row of :data:`REGISTRATION_COLUMNS` (every store
    back end reads them alike)."""
    account_id, device_id, platform, token, p256dh, auth, topic, updated_at = row
    assert isinstance(device_id, int) and isinstance(updated_at, int)
    return StoredRegistration(
        str(account_id),
        device_id,
        _platform(platform),
        str(token),
        str(p256dh),
        str(auth),
        str(topic),
        updated_at,
    )


def setting_from_row(level: object, muted_until: object) -> NotifySetting:
    """A notification setting from its stored level and mute time."""
    return NotifySetting(_level(level), muted_until if isinstance(muted_until, int) else None)


def _platform(value: object) -> PushPlatform:
    if value == "apns":
        return "apns"
    if value == "fcm":
        return "fcm"
    if value == "webpush":
        return "webpush"
    return "log"


def _level(value: object) -> NotifyLevel:
    if value == "mentions":
        return "mentions"
    if value == "none":
        return "none"
    return "all"


@dataclasses.dataclass(frozen=True, slots=True)
class PushTargets:
    """Everything the push decision needs about one conversation's recipients, read at once.
    Without registrations there is nothing to decide: a store may then leave ``conv_kind`` and
    ``settings`` empty without reading them."""

    #: "direct" | "group"; "" if the conversation does not exist
    conv_kind: str
    registrations: list[StoredRegistration]
    #: account id → its setting for this conversation (absent: the default)
    settings: dict[str, NotifySetting]


class PushStore(Protocol):
    async def set_push_registration(self, registration: StoredRegistration) -> None:
        """Set or replace the device's registration."""

    async def push_registration(
        self, account_id: str, device_id: int
    ) -> StoredRegistration | None: ...

    async def clear_push_registration(self, account_id: str, device_id: int) -> bool:
        """Delete the device's registration; False if it had none."""

    async def drop_push_registration(self, account_id: str, device_id: int, token: str) -> bool:
        """Delete the device's registration only if it still has ``token`` (a provider said it
        is invalid; the device may have registered a new one meanwhile)."""

    async def push_targets(self, conv_id: str, accounts: Sequence[str]) -> PushTargets:
        """The conversation's kind, the registrations of every device of ``accounts``, and
        those accounts' settings for the conversation."""

    async def notify_setting(self, account_id: str, conv_id: str) -> NotifySetting: ...

    async def notify_settings_of(self, account_id: str) -> dict[str, NotifySetting]:
        """Every conversation where the account set something other than the default."""

    async def set_notify_setting(
        self, account_id: str, conv_id: str, setting: NotifySetting
    ) -> None: ...
