"""Routing frames to the live connections of devices and accounts."""

from tidings.server.bus.base import Bus, Delivery, Subscriber

__all__ = ["Bus", "Delivery", "Subscriber"]
