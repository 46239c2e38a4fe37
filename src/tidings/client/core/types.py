"""Value types of the client core: settings and the statuses the engine decides."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MessageStatus(enum.StrEnum):
    """Delivery status of a message. Own messages move forward only:
    sending → sent → delivered → read, or sending → failed."""

    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Timing of the delivery engine (seconds). The defaults suit a desktop or a phone in the
    foreground; a push-woken phone wants shorter handshakes and longer keepalives."""

    #: between application pings while connected
    ping_interval: float = 25.0
    #: without any frame from the server after which the connection counts as dead
    dead_after: float = 60.0
    #: to wait for Welcome after Hello before giving the connection up
    handshake_timeout: float = 20.0
    #: to wait for Accepted/Rejected before resending a message (grows with backoff)
    send_timeout: float = 10.0
    #: first and longest delay between reconnect attempts (jittered exponential backoff)
    reconnect_base: float = 0.5
    reconnect_cap: float = 60.0
    #: first and longest delay before resending a message after a transient error
    retry_base: float = 0.5
    retry_cap: float = 60.0
    #: to wait for the answer to a Fetch before asking again
    fetch_timeout: float = 10.0
