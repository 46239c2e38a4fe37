"""The server's domain: its records and the rules every store applies, free of I/O.

A store fetches rows, asks a rule here, and writes; so every back end (SQLite today) refuses
the same operations the same way. See docs/architecture.md.
"""

from tidings.server.domain.records import (
    AccountRecord,
    Appended,
    ConversationKind,
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
    Role,
    StaleDeviceList,
    WatermarkMove,
)

__all__ = [
    "AccountRecord",
    "Appended",
    "ConversationKind",
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
    "Role",
    "StaleDeviceList",
    "WatermarkMove",
]
