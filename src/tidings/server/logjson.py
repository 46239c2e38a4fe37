"""Structured logs (``log_format = "json"``) and request ids.

:class:`JsonFormatter` writes each record as one JSON object on one line: ``ts`` (ISO 8601,
UTC), ``level``, ``logger``, ``msg`` and, when the record was logged while serving an HTTP
request or a WebSocket connection, ``request_id``. The message is the one the redaction filter
(:mod:`tidings.server.logredact`) has already rewritten, so JSON logs hold no secret either.

:class:`RequestIds` is ASGI middleware: every HTTP request and every WebSocket connection gets
a fresh id (or the ``X-Request-Id`` a trusted proxy set, if it is short and plain), kept in a
context variable for everything logged while it is served, and sent back as ``X-Request-Id``.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
from typing import Any

#: The id of the request or connection being served, "" outside one.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("tidings_request_id", default="")

_PLAIN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    return secrets.token_hex(8)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json(handlers: list[logging.Handler]) -> None:
    """Switch ``handlers`` to one JSON object per line."""
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())


class RequestIds:
    """ASGI middleware: a request id per HTTP request and WebSocket connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if _PLAIN_ID.match(given) else new_request_id()
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Any) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
