"""REST bodies of push notifications: a device's push registration, the server's VAPID key and
the per-conversation notification level (routes in :mod:`tidings.protocol.routes`).

What a push carries is not a REST body: it is the opaque conversation hint (the
``push_hint`` of :class:`~tidings.protocol.rest.Conversation`, different for every account),
a counter and whether it alerts. Never content, sender names or titles.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from tidings.protocol.frames import ConvId, Millis

#: Which push service delivers a device's wakes. ``log`` only logs (servers without a service,
#: tests, desktop clients that poll).
PushPlatform = Literal["apns", "fcm", "webpush", "log"]
#: How loudly a conversation may notify the account's devices: every message, only messages
#: that mention the account (a direct chat counts every message as mentioning), or never.
NotifyLevel = Literal["all", "mentions", "none"]
NOTIFY_LEVELS: tuple[NotifyLevel, ...] = ("all", "mentions", "none")

#: an APNs/FCM token or a WebPush endpoint URL
PushToken = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
#: a base64url key of a WebPush subscription (p256dh: 65 bytes, auth: 16 bytes)
SubscriptionKey = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[A-Za-z0-9_=-]*$")]
#: an APNs bundle id ("apns-topic"); empty: the server's configured topic
PushTopic = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[A-Za-z0-9._-]*$")]


class PushRegistration(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/push``: this device's registration, replacing any earlier one. ``token`` is
    the APNs device token, the FCM registration token, the WebPush endpoint URL (with the
    subscription's ``p256dh`` and ``auth``) or any label for ``log``."""

    platform: PushPlatform
    token: PushToken
    p256dh: SubscriptionKey = ""
    auth: SubscriptionKey = ""
    topic: PushTopic = ""


class PushStatus(msgspec.Struct):
    """``GET /v1/push``: this device's registration, or None. Only ever the caller's own."""

    registration: PushRegistration | None = None
    #: ms since the epoch: when it was last set
    updated_at: Millis | None = None


class VapidKey(msgspec.Struct):
    """``GET /v1/push/vapid``: the application server key WebPush subscriptions are made with
    (base64url, uncompressed P-256 point); empty when the server has no WebPush configured."""

    public_key: str


class Notifications(msgspec.Struct):
    """The calling account's notification setting of one conversation, the same on all of its
    devices. ``muted_until``: ms since the epoch; the conversation gives no alerts before it
    (``MUTED_FOREVER`` for "always"); None: not muted."""

    conv: ConvId
    level: NotifyLevel = "all"
    muted_until: Millis | None = None


class UpdateNotifications(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/conversations/{conv}/notifications``: the new level and mute (both replace
    the old values; ``muted_until`` None unmutes)."""

    level: NotifyLevel
    muted_until: Millis | None = None


#: ``muted_until`` of a conversation muted for good
MUTED_FOREVER = 2**62
