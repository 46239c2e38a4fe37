"""Why a server could not be reached, in words a person can act on.

:func:`unreachable` turns the exception of a failed REST call or WebSocket connect into a
:class:`~.errors.NotConnected` subclass whose ``cause`` and message say what happened: nothing
listens there (refused), the name does not resolve (DNS), TLS spoken to a plain port or plain
HTTP to a TLS port (wrong scheme), another TLS failure, a timeout, or a connection that broke
before the answer came. A plain-HTTP call whose connection is closed without an answer is
checked once more with a TLS handshake (:func:`speaks_tls`): a server that completes it is a
TLS server, and the URL should start with ``https://``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import websockets

from .errors import (
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    NotConnected,
    ServerTimeout,
    TlsFailed,
    WrongScheme,
)

#: seconds the TLS check of :func:`speaks_tls` may take
PROBE_TIMEOUT = 2.0


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _where(url: str) -> tuple[str, bool]:
    parts = urlsplit(url)
    tls = parts.scheme in ("https", "wss")
    port = parts.port or (443 if tls else 80)
    return f"{parts.hostname}:{port}", tls


def unreachable(exc: BaseException, url: str) -> NotConnected:
    """The typed error for ``exc``, raised while calling the server at ``url``."""
    where, tls = _where(url)
    chain = list(_chain(exc))
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if any(isinstance(e, socket.gaierror) for e in chain):
        host = urlsplit(url).hostname
        return HostNotFound(f"cannot reach {url}: the host name {host!r} does not resolve (DNS)")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return ConnectionRefused(
            f"cannot reach {url}: connection refused by {where} (is the server running,"
            " on this port?)"
        )
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return TlsFailed(f"cannot reach {url}: the server's TLS certificate is not trusted")
    if any(isinstance(e, ssl.SSLError) for e in chain):
        if tls:
            return WrongScheme(
                f"cannot reach {url}: the TLS handshake failed; the server at {where} seems"
                " to speak plain HTTP (use http:// instead of https://)"
            )
        return TlsFailed(f"cannot reach {url}: the TLS handshake failed ({detail})")
    if any(isinstance(e, httpx.TimeoutException | TimeoutError) for e in chain):
        return ServerTimeout(f"cannot reach {url}: {where} did not answer in time")
    if not tls and any(_bad_answer(e) for e in chain):
        # An answer that is not HTTP at all: bytes of a TLS alert, say.
        return WrongScheme(
            f"cannot reach {url}: the server at {where} does not answer plain HTTP;"
            " is it a TLS server (use https:// instead of http://)?"
        )
    return ConnectionLost(f"cannot reach {url}: the connection broke ({detail})")


def _bad_answer(exc: BaseException) -> bool:
    text = str(exc).lower()
    if isinstance(exc, httpx.RemoteProtocolError):
        return "illegal" in text or "invalid" in text
    return isinstance(exc, websockets.InvalidMessage) and "invalid" in text


async def speaks_tls(url: str) -> bool:
    """Whether the server at ``url`` (an ``http://`` or ``ws://`` one) completes a TLS
    handshake (certificates are not checked: only whether it speaks TLS at all)."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    if host is None:
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        pass
    return True


async def diagnose(exc: BaseException, url: str) -> NotConnected:
    """:func:`unreachable`, with a plain-HTTP connection closed without an answer checked
    once more: a server that speaks TLS makes it a :class:`WrongScheme`."""
    error = unreachable(exc, url)
    if isinstance(error, ConnectionLost) and not _where(url)[1] and await speaks_tls(url):
        where = _where(url)[0]
        return WrongScheme(
            f"cannot reach {url}: the server at {where} speaks TLS; use https:// instead of http://"
        )
    return error
