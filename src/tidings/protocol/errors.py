"""Error codes shared by REST responses and WebSocket ``Error``/``Rejected`` frames.

A code is a stable, machine-readable string; the human message next to it may change.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    # Frame / request shape
    BAD_FRAME = "bad_frame"  # undecodable or schema-invalid frame or body
    FRAME_TOO_LARGE = "frame_too_large"  # over MAX_FRAME_BYTES
    UNSUPPORTED_VERSION = "unsupported_version"
    # Identity and permissions
    UNAUTHORIZED = "unauthorized"  # missing or wrong device token
    FORBIDDEN = "forbidden"  # authenticated, but not allowed (e.g. not an admin)
    NOT_MEMBER = "not_member"  # sender/reader is not a member of the conversation
    NOT_FOUND = "not_found"
    # Accounts
    INVALID_USERNAME = "invalid_username"
    USERNAME_TAKEN = "username_taken"
    REGISTRATION_CLOSED = "registration_closed"
    # Conversations
    GROUP_FULL = "group_full"  # member cap reached
    ALREADY_MEMBER = "already_member"
    NOT_A_GROUP = "not_a_group"
    # Messages
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BLOCKED = "blocked"
    STALE_DEVICES = "stale_devices"  # see the StaleDevices frame
    # Keys and devices
    CONFLICT = "conflict"  # e.g. an identity key that differs from the account's
    PENDING = "pending"  # a provisioning request not approved yet
    EXPIRED = "expired"
    # Transient
    RATE_LIMITED = "rate_limited"  # too many Sends (or bytes) per second: retry later
    QUOTA_EXCEEDED = "quota_exceeded"  # the account holds too many stored bytes: retry later
    OVERLOADED = "overloaded"
    INTERNAL = "internal"


#: Codes after which a client must mark a message ``failed`` rather than retry it.
PERMANENT_SEND_ERRORS: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.NOT_MEMBER,
        ErrorCode.NOT_FOUND,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.BLOCKED,
        ErrorCode.FORBIDDEN,
        ErrorCode.BAD_FRAME,
    }
)


#: Codes of a ``Rejected`` after which a client keeps the message ``sending`` and sends it again
#: later with backoff (``quota_exceeded``: with the longest backoff, until the recipients' acks
#: or the retention period free the sender's stored bytes). Any other ``Rejected`` is final.
TRANSIENT_SEND_ERRORS: frozenset[ErrorCode] = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.QUOTA_EXCEEDED, ErrorCode.OVERLOADED, ErrorCode.INTERNAL}
)
