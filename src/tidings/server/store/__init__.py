"""Persistent state of the server behind the :class:`Store` protocol."""

from tidings.server.store.base import (
    AccountRecord,
    Appended,
    ConversationRecord,
    DeviceQueued,
    DeviceRecord,
    LinkedDevice,
    MemberRecord,
    MembershipChange,
    NewConversation,
    NewDeviceLink,
    NewMessage,
    Refused,
    StaleDeviceList,
    Store,
    WatermarkMove,
)

__all__ = [
    "AccountRecord",
    "Appended",
    "ConversationRecord",
    "DeviceQueued",
    "DeviceRecord",
    "LinkedDevice",
    "MemberRecord",
    "MembershipChange",
    "NewConversation",
    "NewDeviceLink",
    "NewMessage",
    "Refused",
    "StaleDeviceList",
    "Store",
    "WatermarkMove",
]
