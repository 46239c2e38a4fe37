"""uvicorn's httptools HTTP protocol with deadlines for slow clients (slowloris).

uvicorn closes an idle kept-alive connection (``timeout_keep_alive``) but sets no deadline on
a connection that has sent nothing yet, or part of a request: a client that trickles half a
request line holds a socket, and a file descriptor, for ever. The protocol made by
:func:`guarded_http_protocol` adds:

* a **header deadline**: from connecting (or from the first byte of the next request on a
  kept-alive connection) a client has ``header_timeout`` seconds to send the request line and
  every header, a WebSocket upgrade request too; then it gets 408 and the connection closes;
* a **body deadline**: ``body_timeout`` seconds more for the body; a request to one of
  ``long_body_paths`` (the local store's blob endpoint, whose part PUTs are megabytes on a slow
  phone link) gets ``long_body_timeout`` instead — still a deadline, only a longer one;
* a **cap on half-open connections**: at most ``max_pending`` connections may be sending their
  headers at once; one more closes the oldest of them. A legitimate request's headers arrive
  within milliseconds, so the ones that are old are the ones trickling.

uvicorn's own ``limit_concurrency`` is not used: it counts open WebSockets too, and a node
holds tens of thousands of idle ones on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

#: Seconds between two warnings about closed connections (a flood would flood the log).
_WARN_EVERY = 60.0


def guarded_http_protocol(
    *,
    header_timeout: float,
    body_timeout: float,
    max_pending: int,
    long_body_timeout: float | None = None,
    long_body_paths: tuple[str, ...] = (),
) -> type[HttpToolsProtocol]:
    """A subclass of uvicorn's httptools protocol with these limits (module docstring). Each
    call makes a class of its own, with its own set of half-open connections.
    ``long_body_paths`` are path prefixes (``"/v1/blobs/"``) whose bodies get
    ``long_body_timeout`` seconds (default: ``body_timeout``)."""
    long_timeout = body_timeout if long_body_timeout is None else long_body_timeout
    if header_timeout <= 0 or body_timeout <= 0 or long_timeout <= 0 or max_pending < 1:
        raise ValueError("timeouts must be positive and max_pending at least 1")
    #: connections sending their headers, oldest first (a dict keeps insertion order)
    pending: dict[GuardedHttpProtocol, None] = {}
    closed = {"timeout": 0, "evicted": 0}
    warned = [0.0]

    def note(reason: str) -> None:
        closed[reason] += 1
        now = time.monotonic()
        if now - warned[0] >= _WARN_EVERY:
            warned[0] = now
            log.warning(
                "closing slow HTTP clients: %d timed out, %d evicted (more than %d "
                "half-open connections) so far",
                closed["timeout"],
                closed["evicted"],
                max_pending,
            )

    class GuardedHttpProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _in_body = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Bytes between requests that begin none (stray CRLFs) cancelled uvicorn's
            # keep-alive timer: they count as the start of a request.
            if (
                self._deadline is None
                and (self.cycle is None or self.cycle.response_complete)
                and self.transport.get_protocol() is self
                and not self.transport.is_closing()
            ):
                self._await_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None or self._in_body:
                self._await_headers()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            pending.pop(self, None)
            path = self.scope.get("path", "") if isinstance(self.scope, dict) else ""
            long = bool(long_body_paths) and str(path).startswith(long_body_paths)
            self._arm(long_timeout if long else body_timeout)
            self._in_body = True

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._in_body = False
            self._arm(header_timeout)
            pending[self] = None
            while len(pending) > max_pending:
                oldest = next(iter(pending))
                oldest._expire("evicted")

        def _arm(self, seconds: float) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expire, "timeout")

        def _disarm(self) -> None:
            pending.pop(self, None)
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self, reason: str) -> None:
            in_body = self._in_body
            self._disarm()
            if self.transport.is_closing():
                return
            note(reason)
            if not in_body:
                # No request has started: nobody else will answer this connection.
                self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

        def __hash__(self) -> int:
            return id(self)

        def __eq__(self, other: Any) -> bool:
            return self is other

    return GuardedHttpProtocol
