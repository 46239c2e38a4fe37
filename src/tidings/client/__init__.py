"""The Tidings client core: ``from tidings.client import Client`` (see docs/client-api.md)."""

from tidings.client.api import Client
from tidings.client.errors import ClientError, NotConnected, ProfileNotFound, ServerRefused

__all__ = ["Client", "ClientError", "NotConnected", "ProfileNotFound", "ServerRefused"]
