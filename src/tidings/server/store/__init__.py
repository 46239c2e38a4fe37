"""Persistent state of the server behind the :class:`Store` protocol."""

from tidings.server.store.base import (
    AccountRecord,
    Appended,
    ConversationRecord,
    DeviceRecord,
    MemberRecord,
    MembershipChange,
    NewConversation,
    NewMessage,
    Refused,
    Store,
    WatermarkMove,
)
from tidings.server.store.sqlite import SqliteStore

__all__ = [
    "AccountRecord",
    "Appended",
    "ConversationRecord",
    "DeviceRecord",
    "MemberRecord",
    "MembershipChange",
    "NewConversation",
    "NewMessage",
    "Refused",
    "SqliteStore",
    "Store",
    "WatermarkMove",
]
