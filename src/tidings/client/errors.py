"""Exceptions raised by the public client API."""

from __future__ import annotations

from tidings.protocol.close import FATAL_REASONS, CloseCode


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


class ProfileCorrupt(ClientError):
    """The profile database is damaged (not a database, a malformed image, a failed
    integrity check): nothing in it can be trusted. The message says what to run."""

    def __init__(self, path: str, detail: str) -> None:
        aside = f"{path}.corrupt"
        super().__init__(
            "profile_corrupt",
            f"the profile database {path} is damaged ({detail}). Move it aside and set this"
            f" device up again: `mv {path} {aside}` (with its -wal and -shm files, if any),"
            " then `tidings device link --profile <dir> --server <url>` to link it to your"
            " account from another device (or `tidings account create` for a new account);"
            " restore from a backup once you have one.",
        )
        self.path = path
        self.detail = detail


class ProfileInUse(ClientError):
    """Another process holds the profile (the app and its sync service, two commands): one
    process at a time may use it. ``pid`` is the holder's process id, if known."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            "profile_in_use",
            f"the profile {path} is in use by {holder}; close it there (or wait until it"
            " ends) and try again",
        )
        self.path = path
        self.pid = pid


#: why a server could not be reached (:attr:`NotConnected.cause`)
CAUSE_UNKNOWN = "unknown"
CAUSE_REFUSED = "refused"
CAUSE_WRONG_SCHEME = "wrong_scheme"
CAUSE_DNS = "dns"
CAUSE_TIMEOUT = "timeout"
CAUSE_TLS = "tls"
CAUSE_LOST = "lost"


class NotConnected(ClientError):
    """The server could not be reached for a call that needs it (REST or waiting for sync).
    ``cause`` says why, when the client can tell: the subclasses below."""

    cause_default = CAUSE_UNKNOWN

    def __init__(self, message: str = "the server cannot be reached", cause: str = "") -> None:
        super().__init__("not_connected", message)
        self.cause = cause or self.cause_default


class ConnectionRefused(NotConnected):
    """Nothing listens at the server's address and port (is the server running?)."""

    cause_default = CAUSE_REFUSED


class WrongScheme(NotConnected):
    """TLS spoken to a plain HTTP port (``https://`` for an ``http://`` server) or plain HTTP
    to a TLS port."""

    cause_default = CAUSE_WRONG_SCHEME


class HostNotFound(NotConnected):
    """The server's host name does not resolve (DNS)."""

    cause_default = CAUSE_DNS


class ServerTimeout(NotConnected):
    """The server did not answer in time (connecting, or waiting for its answer)."""

    cause_default = CAUSE_TIMEOUT


class TlsFailed(NotConnected):
    """The TLS handshake failed for another reason (an untrusted certificate, say)."""

    cause_default = CAUSE_TLS


class ConnectionLost(NotConnected):
    """The connection broke before the answer came: the request may have reached the server
    (calls that are safe to retry are retried)."""

    cause_default = CAUSE_LOST


class ServerRefused(ClientError):
    """The server answered 4xx; ``code`` is a :class:`tidings.protocol.ErrorCode` value."""

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(code, message)
        self.status = status


class Forbidden(ServerRefused):
    """403: not allowed (not a member of the conversation, not its admin)."""


class NotFound(ServerRefused):
    """404: no such user, conversation, device or provisioning request."""


class Conflict(ServerRefused):
    """409: the request contradicts the server's state (a name taken, another identity key)."""


class RateLimited(ServerRefused):
    """429: too many requests; try again later."""


class ConnectionEnded(ClientError):
    """The connection ended for good and the client does not reconnect (a fatal WebSocket
    close code, see :mod:`tidings.protocol.close`): ``close_code`` says why."""

    def __init__(self, close_code: int, message: str) -> None:
        super().__init__(_ENDED_CODES.get(close_code, "connection_ended"), message)
        self.close_code = close_code


class DeviceRemoved(ConnectionEnded):
    """This device was removed from the account, or its token is invalid (HTTP 401, close
    code 4401). Nothing this profile does will work again: link it anew."""

    def __init__(self, message: str = FATAL_REASONS[CloseCode.UNAUTHORIZED]) -> None:
        super().__init__(CloseCode.UNAUTHORIZED, message)


_ENDED_CODES: dict[int, str] = {
    CloseCode.UNAUTHORIZED: "device_removed",
    CloseCode.REPLACED: "replaced",
    CloseCode.UNSUPPORTED_VERSION: "update_required",
}

#: HTTP status → the ServerRefused subclass raised for it
REFUSALS: dict[int, type[ServerRefused]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}
