"""Routing frames to the live connections of devices and accounts."""

from tidings.server.bus.base import Bus, Delivery, Subscriber
from tidings.server.bus.local import LocalBus

__all__ = ["Bus", "Delivery", "LocalBus", "Subscriber"]
