"""Exceptions raised by the public client API."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every client error: a stable machine-readable ``code`` and a human ``message``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ProfileNotFound(ClientError):
    """The profile directory holds no account (``Client.open`` on an empty directory)."""

    def __init__(self, message: str = "no account in this profile") -> None:
        super().__init__("profile_not_found", message)


class NotConnected(ClientError):
    """The server could not be reached for a call that needs it (REST or waiting for sync)."""

    def __init__(self, message: str = "the server cannot be reached") -> None:
        super().__init__("not_connected", message)


class ServerRefused(ClientError):
    """The server answered 4xx; ``code`` is a :class:`tidings.protocol.ErrorCode` value."""

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(code, message)
        self.status = status
