"""The log filter on the server's handlers: no token, secret, key or payload at any level."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from websockets.frames import Frame, Opcode

from tidings.server import logredact
from tidings.server.auth import new_token

TOKEN = new_token().token
PROVISIONING_SECRET = "Zq0xV8mN3kP1sR7tU2wY5aB9cD4eF6gH0iJ2kL4mN6o"
#: invite tokens as made: sign-up ("inv-" + token_urlsafe(18)) and channel (token_urlsafe(18))
SIGNUP_INVITE = "inv-q3V9kLm2XnP0rT5sW8yZa1Bc"
CHANNEL_INVITE = "Hx4Tn7Qp2Lw9Zr5Kc8Vb1Md6"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logredact.install([handler])
    logger = logging.getLogger("tests.logredact")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    "line",
    [
        f"< Authorization: Bearer {TOKEN}",
        f"< authorization: bearer {PROVISIONING_SECRET}",
        f"headers: [(b'authorization', b'Bearer {TOKEN}'), (b'host', b'x')]",
        f"{{'authorization': 'Bearer {TOKEN}'}}",
        f"Authorization: Basic {PROVISIONING_SECRET}",
        f"token={TOKEN} seen",
        f"the secret is {PROVISIONING_SECRET}.",
    ],
)
def test_credentials_are_redacted(captured, line: str):
    logger, stream = captured
    logger.debug(line)
    text = stream.getvalue()
    assert "[redacted]" in text
    for part in (TOKEN, *TOKEN.split("."), PROVISIONING_SECRET):
        assert part not in text


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"invite {SIGNUP_INVITE} made", SIGNUP_INVITE),
        (f"{{'username': 'ann', 'invite': '{SIGNUP_INVITE}'}}", SIGNUP_INVITE),
        (
            f'127.0.0.1:5000 - "POST /v1/channel-invites/{CHANNEL_INVITE} HTTP/1.1" 200',
            CHANNEL_INVITE,
        ),
        (
            f'127.0.0.1:5000 - "DELETE /v1/channels/c1/invites/{CHANNEL_INVITE} HTTP/1.1" 204',
            CHANNEL_INVITE,
        ),
    ],
)
def test_invite_tokens_are_redacted(captured, line: str, secret: str):
    logger, stream = captured
    logger.info(line)
    text = stream.getvalue()
    assert secret not in text and "[redacted]" in text


def test_arguments_are_merged_then_redacted_and_bytes_only_sized(captured):
    logger, stream = captured
    logger.info("token %s payload %r", TOKEN, b"PAYLOAD-MARKER")
    text = stream.getvalue()
    assert TOKEN not in text and "PAYLOAD-MARKER" not in text
    assert "[14 bytes]" in text


def test_websockets_frames_are_logged_by_kind_and_size(captured):
    logger, stream = captured
    logger.debug("< %s", Frame(Opcode.BINARY, b"PAYLOAD-MARKER secret"))
    logger.debug("> %s", Frame(Opcode.TEXT, b"PAYLOAD-MARKER text"))
    text = stream.getvalue()
    assert "PAYLOAD-MARKER" not in text and b"PAYLOAD".hex() not in text
    assert "< BINARY [21 bytes]" in text and "> TEXT [19 bytes]" in text


def test_tracebacks_are_redacted(captured):
    logger, stream = captured
    try:
        raise ValueError(f"bad header Bearer {TOKEN}")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    assert "Traceback" in text and "ValueError" in text
    assert TOKEN not in text and TOKEN.split(".")[1] not in text


def test_ordinary_lines_are_left_alone(captured):
    logger, stream = captured
    lines = [
        '127.0.0.1:5000 - "GET /v1/conversations/c0123456789abcdef0123456789abcdef/messages'
        '?after=3&limit=50 HTTP/1.1" 200',
        "closing connection of a0123456789abcdef0123456789abcdef/1: 1000 bye",
        "open files limit (RLIMIT_NOFILE): 20000 (hard 20000)",
        "uvicorn.protocols.websockets.websockets_sansio_impl",
    ]
    for line in lines:
        logger.info(line)
    assert stream.getvalue().splitlines() == [f"INFO tests.logredact: {line}" for line in lines]


def test_installing_twice_adds_one_filter():
    handler = logging.StreamHandler(io.StringIO())
    logredact.install([handler])
    logredact.install([handler])
    assert sum(isinstance(f, logredact.Redactor) for f in handler.filters) == 1


def test_configure_logging_puts_the_filter_on_the_root_handlers():
    from tidings.server.main import configure_logging

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging("debug")
        assert root.handlers
        assert all(any(isinstance(f, logredact.Redactor) for f in h.filters) for h in root.handlers)
    finally:
        root.handlers = saved
        root.setLevel(level)
