"""What the command line's commands share: the JSON shapes of messages, members and
conversations, waiting on a client's events, opening a profile and syncing with its server,
resolving ``@user`` / ``#conversation`` arguments, and the parser that reports usage errors
as :class:`CliError` (so ``--json`` can print them too)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tidings.cli import render
from tidings.cli.attachments import attachment_json

# Shared with a server-only install's command (tidings.command); re-exported for the
# commands of other modules.
from tidings.cli.base import EXIT_ERROR as EXIT_ERROR
from tidings.cli.base import EXIT_OK as EXIT_OK
from tidings.cli.base import EXIT_TIMEOUT as EXIT_TIMEOUT
from tidings.cli.base import EXIT_USAGE as EXIT_USAGE
from tidings.cli.base import CliError as CliError
from tidings.cli.base import Outcome as Outcome
from tidings.cli.base import Parser as Parser
from tidings.client import Client
from tidings.client.errors import ConnectionEnded, NotConnected
from tidings.client.types import (
    ConnectionState,
    Conversation,
    Member,
    Message,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
    Synced,
)

#: How long a command waits for the server (connect + initial sync) unless told otherwise.
DEFAULT_TIMEOUT = 30.0
#: Quiet time after which ``sync`` considers the connection idle.
IDLE_SECONDS = 0.5
#: Why a server cannot be reached, when waiting cannot help: one-shot commands fail at once.
HOPELESS_CAUSES = frozenset({"refused", "dns", "wrong_scheme", "tls"})


# --------------------------------------------------------------------------- rendering


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conv_id": message.conv_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "sender_name": message.sender_name,
        "is_own": message.is_own,
        "kind": message.kind,
        "body": message.body,
        "reply_to": str(message.reply_to) if message.reply_to is not None else None,
        "reply_preview": message.reply_preview,
        "reactions": {emoji: list(users) for emoji, users in message.reactions},
        "status": str(message.status),
        "fail_reason": message.fail_reason,
        "created_at": message.created_at,
        "edited": message.edited,
        "edited_at": message.edited_at,
        "deleted": message.deleted,
        "attachments": [attachment_json(a) for a in message.attachments],
        "verified": message.verified,
    }


def member_json(member: Member) -> dict[str, Any]:
    return {
        "account_id": member.account_id,
        "username": member.username,
        "name": member.name or member.username,
        "role": member.role,
    }


def conversation_json(conv: Conversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "kind": conv.kind,
        "title": conv.title,
        "members": [member_json(m) for m in conv.members],
        "last_message": message_json(conv.last_message) if conv.last_message else None,
        "last_activity": conv.last_activity,
        "unread": conv.unread,
        "is_admin": conv.is_admin,
        "subscribers": conv.subscribers,
    }


# Lines for people live in tidings.cli.render (other people's text made terminal-safe, every
# line naming its chat); re-exported here for the commands of other modules.
message_line = render.message_line
conversation_line = render.conversation_line
conversation_text = render.conversation_text


# --------------------------------------------------------------------------- event watching


class EventWatch:
    """Follows ``client.events()`` in the background and lets callers wait for a condition
    that is checked again after every event (and at least every ``poll`` seconds, so a
    condition that changed without an event is still noticed)."""

    def __init__(self, client: Client, poll: float = 0.2) -> None:
        self._client = client
        self._poll = poll
        self._changed = asyncio.Event()
        self.synced = False
        self.last_event = time.monotonic()
        self.added: dict[uuid.UUID, Message] = {}
        self.updated: dict[uuid.UUID, Message] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventWatch:
        self._task = asyncio.create_task(self._pump())
        await asyncio.sleep(0)  # let the subscription register before anything happens
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        async for event in self._client.events():
            self.last_event = time.monotonic()
            if isinstance(event, Synced):
                self.synced = True
            elif isinstance(event, MessageAdded):
                self.added[event.message.id] = event.message
            elif isinstance(event, MessageUpdated):
                if event.message.id in self.added:
                    self.added[event.message.id] = event.message
                else:
                    self.updated[event.message.id] = event.message
            self._changed.set()

    async def until(self, check: Callable[[], Awaitable[bool]], within: float) -> bool:
        """Wait until ``check()`` is true; False when ``within`` seconds ran out first."""
        deadline = time.monotonic() + within
        while True:
            if await check():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(self._poll, remaining))


# --------------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def opened(profile: Path) -> AsyncIterator[Client]:
    client = await Client.open(profile)
    try:
        yield client
    finally:
        await client.close()


def unreachable(exc: NotConnected) -> CliError:
    """A server that cannot be reached, with the cause (refused, DNS, wrong scheme, ...)."""
    return CliError("not_connected", exc.message)


async def connect_and_sync(client: Client, within: float) -> None:
    """Start the client and wait for the initial sync with the server; a first connect that
    waiting cannot fix (refused, DNS, wrong scheme) fails at once."""
    await client.start()
    try:
        await client.wait_synced(timeout=within, fail_fast=True)
    except (TimeoutError, NotConnected) as exc:
        if isinstance(exc, NotConnected) and exc.cause in HOPELESS_CAUSES:
            raise unreachable(exc) from exc
        raise CliError(
            "timeout",
            f"could not sync with {client.account.server_url} within {within:g} s",
            EXIT_TIMEOUT,
        ) from exc


def check_ended(client: Client) -> None:
    """Fail (exit 1) when the connection ended for good: the device was removed or its token
    is invalid, another connection took over, or Tidings must be updated."""
    connection = client.connection
    if connection.state is ConnectionState.CLOSED:
        reason = connection.last_error or "the connection ended"
        raise ConnectionEnded(connection.close_code or 0, reason)


def parse_message_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise CliError("bad_argument", f"not a message id: {text!r}") from exc


def text_arg(text: str) -> str:
    """A message text argument: ``-`` reads it from standard input (one trailing newline
    dropped, so ``echo hi | tidings send @bob -`` sends "hi")."""
    if text != "-":
        return text
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def group_id(text: str) -> str:
    return text[1:] if text.startswith("#") else text


def username_arg(text: str) -> str:
    return text[1:] if text.startswith("@") else text


async def resolve(client: Client, target: str) -> Conversation:
    """``@user`` → the direct conversation with that user (``@me`` or one's own username:
    note to self); ``#id`` (or ``#title`` of a group) → that conversation."""
    if target.startswith("@") and len(target) > 1:
        username = target[1:]
        if username in ("me", client.account.username):
            return await client.note_to_self()
        me = client.account.account_id
        for conv in await client.conversations():
            others = [m for m in conv.members if m.account_id != me]
            if conv.kind == "direct" and [m.username for m in others] == [username]:
                return conv
        return await client.open_direct(username)
    if target.startswith("#") and len(target) > 1:
        wanted = target[1:]
        for conv in await client.conversations():
            if conv.id == wanted:
                return conv
        titled = [
            c for c in await client.conversations() if c.kind == "group" and c.title == wanted
        ]
        if len(titled) == 1:
            return titled[0]
        return await client.conversation(wanted)
    raise CliError("bad_argument", f"expected @user or #conversation-id, got {target!r}")


async def own_pending(client: Client) -> set[uuid.UUID]:
    """Own messages still ``sending`` in the newest page of every conversation."""
    pending: set[uuid.UUID] = set()
    for conv in await client.conversations():
        page = await client.history(conv.id, limit=200)
        for message in page.messages:
            if message.is_own and message.status == MessageStatus.SENDING:
                pending.add(message.id)
    return pending


async def all_left_sending(client: Client, ids: set[uuid.UUID]) -> bool:
    for message_id in ids:
        message = await client.message(message_id)
        if message is not None and message.status == MessageStatus.SENDING:
            return False
    return True
