"""REST bodies (JSON) under ``/v1``. The routes that carry them (method, path, body, answer,
status, who may call) are the table :mod:`tidings.protocol.routes`. Every call except account
creation, provisioning and health carries ``Authorization: Bearer <device token>``. Errors are
:class:`ApiError` with a 4xx/5xx status.

``POST /v1/conversations/direct`` answers the existing conversation (200) if there is one;
adding and removing group members is for admins only. A non-member asking for a conversation
gets 403 ``not_member``; an unknown one 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from tidings.protocol.frames import AccountId, ConvId, DeviceId, Envelope, Millis, Seq

#: 3 to 32 characters of [a-z0-9_.]
USERNAME_PATTERN = r"^[a-z0-9_.]{3,32}$"
Username = Annotated[str, msgspec.Meta(pattern=USERNAME_PATTERN)]
DeviceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: a device token the client made itself: ``<key>.<secret>``, 96 and 256 random bits in
#: base64url without padding (16 and 43 characters); the server keeps only the secret's SHA-256
DEVICE_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}$"  # noqa: S105 - a pattern
DeviceToken = Annotated[str, msgspec.Meta(pattern=DEVICE_TOKEN_PATTERN)]


class ApiError(msgspec.Struct):
    code: str
    message: str


class CreateAccount(msgspec.Struct, forbid_unknown_fields=True):
    """Sign-up. With ``token`` (chosen by the client before its first try) it is safe to
    retry: the same username with the same token answers the same :class:`AccountCreated`
    (same account, device 1) instead of ``username_taken``; another token still gets
    ``username_taken``. Without it the server makes the token (older clients).

    ``invite`` is a registration token from the server's operator (``tidings admin invite
    create``): required when the server's registration is closed, and then it counts one of
    the invite's uses."""

    username: Username
    device_name: DeviceName = "primary"
    token: DeviceToken | None = None
    invite: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class AccountCreated(msgspec.Struct):
    account_id: AccountId
    username: str
    device_id: DeviceId
    #: 256-bit random secret, base64url; shown once, stored by the server only as a hash
    token: str


class Me(msgspec.Struct):
    account_id: AccountId
    username: str
    device_id: DeviceId
    device_name: str


class User(msgspec.Struct):
    account_id: AccountId
    username: str


Role = Literal["admin", "member"]


class Member(msgspec.Struct):
    account_id: AccountId
    username: str
    role: Role


ConversationKind = Literal["direct", "group"]


class Conversation(msgspec.Struct):
    id: ConvId
    kind: ConversationKind
    #: group title; for a direct conversation the server leaves it empty
    title: str
    members: list[Member]
    last_seq: Seq
    created_at: Millis
    #: the caller's notification level here and until when it is muted (ms; None: not
    #: muted), the same on all of its devices (tidings.protocol.push)
    notify_level: Literal["all", "mentions", "none"] = "all"
    muted_until: Millis | None = None
    #: what a push about this conversation carries instead of its id: opaque, different for
    #: every account (empty from servers without push)
    push_hint: str = ""


class CreateDirect(msgspec.Struct, forbid_unknown_fields=True):
    username: Username


class CreateGroup(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    members: list[Username] = []


class AddMembers(msgspec.Struct, forbid_unknown_fields=True):
    usernames: Annotated[list[Username], msgspec.Meta(min_length=1)]


class MessagePage(msgspec.Struct):
    conv: ConvId
    envelopes: list[Envelope]
    head: Seq


class Health(msgspec.Struct):
    ok: bool
    version: str


#: Who may add the account to a group: anybody, or only its contacts. A contact is an account
#: it shares a direct conversation with in which it has sent a message (replying to a message
#: request accepts it, as in Signal); adds by anybody else are refused with ``forbidden``.
GroupAdds = Literal["everyone", "contacts"]


class AccountSettings(msgspec.Struct):
    """The calling account's settings (``GET``/``PUT /v1/settings``)."""

    group_adds: GroupAdds = "everyone"
    #: send read receipts; when off the account's read position still reaches its own
    #: devices, but nobody else learns it, and it sees nobody's (docs/e2ee.md)
    read_receipts: bool = True
    #: send and see typing indicators (the server relays none from or to it when off)
    typing_indicators: bool = True


class UpdateSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/settings``: the settings to change; a field left out keeps its value."""

    group_adds: GroupAdds | None = None
    read_receipts: bool | None = None
    typing_indicators: bool | None = None
