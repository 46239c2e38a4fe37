"""Push notifications: providers for APNs, FCM, WebPush/UnifiedPush and a log-only default,
the dispatcher that sends in the background, and the pure decision of when to wake a device.

Guarantees, first: a push never carries plaintext, sender names or titles (a
:class:`~tidings.server.push.provider.Wake` has no field for them), and handing a wake to the
:class:`~tidings.server.push.dispatcher.PushDispatcher` never blocks delivery.

Only the light modules are imported here; the providers are imported from their modules.
"""

from tidings.server.push.decide import (
    ConversationKind,
    DevicePushState,
    EventKind,
    NotifyLevel,
    PushEvent,
    decide,
)
from tidings.server.push.dispatcher import PushCounters, PushDispatcher
from tidings.server.push.provider import (
    Outcome,
    Platform,
    Priority,
    PushProvider,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
)

__all__ = [
    "ConversationKind",
    "DevicePushState",
    "EventKind",
    "NotifyLevel",
    "Outcome",
    "Platform",
    "Priority",
    "PushCounters",
    "PushDispatcher",
    "PushEvent",
    "PushProvider",
    "PushRegistration",
    "PushResult",
    "Wake",
    "WakeKind",
    "decide",
]
