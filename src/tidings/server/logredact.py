"""No secret in the server's log, at any level.

uvicorn, websockets (under uvicorn's loggers), Litestar and our own modules all log through the
handlers :func:`tidings.server.main.configure_logging` sets up. :func:`install` puts a
:class:`Redactor` on each of those handlers, so whatever logger a record comes from, before it is
written:

- the value of an ``Authorization`` header (websockets logs every handshake header at DEBUG)
  and any ``Bearer <credential>`` become ``[redacted]``;
- anything shaped like a device token (``<key>.<secret>``, base64url, see
  :mod:`tidings.server.auth`) or a provisioning secret (a long base64url run: 43 characters for
  256 bits), and so any long key material written as base64url, becomes ``[redacted]``;
- an invite token (``inv-…`` for sign-up, and a channel invite as it appears in a request path,
  ``/channel-invites/<token>`` or ``/invites/<token>``) becomes ``[redacted]``: such a token is
  shorter than a key, but it still lets whoever reads it join;
- a frame or a bytes value among the record's arguments is written as its type and size only
  (websockets logs every frame it sends and receives at DEBUG, with the start of its payload).

The record's message (arguments merged in) and its traceback text are redacted; the record is
then passed on with no arguments left to merge.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

#: ``Authorization: <anything>`` up to the end of the line or a closing quote, as websockets
#: logs a header (``< Authorization: Bearer …``) or as it appears in a repr of headers
#: (``'authorization': 'Bearer …'``, ``(b'authorization', b'Bearer …')``).
_AUTHORIZATION = re.compile(
    r"""(?i)(authorization['"]?\s*[:=,]\s*(?:b?['"])?)[^'"\r\n]+""",
)
#: A bearer credential wherever it appears.
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
#: A device token: ``<key>.<secret>``, both base64url (16 and 43 characters as made).
_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{12,24}\.[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
#: A long base64url run: a provisioning secret (43 characters), a token secret, key material.
#: A sign-up invite token as the admin socket makes it (``inv-`` and 24 base64url characters).
_SIGNUP_INVITE = re.compile(r"(?<![A-Za-z0-9_-])inv-[A-Za-z0-9_-]{8,}")
#: A channel invite token in a request path (joining, revoking).
_INVITE_PATH = re.compile(r"(/(?:channel-)?invites/)[A-Za-z0-9_-]+")
_LONG_BASE64URL = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}={0,2}(?![A-Za-z0-9_=-])")


def redact(text: str) -> str:
    """``text`` with every credential-shaped part replaced by ``[redacted]``."""
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _TOKEN.sub(REDACTED, text)
    text = _SIGNUP_INVITE.sub(REDACTED, text)
    text = _INVITE_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    return _LONG_BASE64URL.sub(REDACTED, text)


def _summarize(arg: object) -> object:
    """An argument as it may be logged: bytes and frames by their size only."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return f"[{len(arg)} bytes]"
    opcode = getattr(arg, "opcode", None)
    data = getattr(arg, "data", None)
    if opcode is not None and isinstance(data, bytes | bytearray | memoryview):
        # a websockets Frame: its kind and size, never its payload
        name = getattr(opcode, "name", str(opcode))
        return f"{name} [{len(data)} bytes]"
    return arg


class Redactor(logging.Filter):
    """A handler filter that redacts every record it lets through (it drops none)."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple):
                record.args = tuple(_summarize(a) for a in args)
            elif isinstance(args, dict):
                record.args = {k: _summarize(v) for k, v in args.items()}
            message = record.getMessage()
        except Exception:
            # A record whose arguments do not fit its message: keep the template only.
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The text is what handlers print; the live exception could be formatted again.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(handlers: Iterable[logging.Handler] | None = None) -> Redactor:
    """Put one :class:`Redactor` on ``handlers`` (default: the root logger's and those of
    uvicorn's, Litestar's and websockets' loggers, if they have any of their own). Installing
    twice on a handler adds nothing. Returns the filter."""
    if handlers is None:
        names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "websockets")
        found: list[logging.Handler] = []
        for name in names:
            found.extend(logging.getLogger(name).handlers)
        handlers = found
    redactor = Redactor()
    for handler in handlers:
        if not any(isinstance(f, Redactor) for f in handler.filters):
            handler.addFilter(redactor)
    return redactor
