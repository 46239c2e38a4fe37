"""The ``tidings`` command line: run a server, or act as a client on a profile directory.

Client commands use only the public :class:`tidings.client.Client` API. Every command takes
``--json``: the result is then one JSON object on stdout and an error is ``{"code", "message"}``
on stderr, with a non-zero exit code either way an error happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tidings import cli_render
from tidings.cli_attachments import attachment_json

# Shared with a server-only install's command (tidings.command); re-exported for the
# commands of other modules.
from tidings.cli_base import EXIT_ERROR as EXIT_ERROR
from tidings.cli_base import EXIT_OK as EXIT_OK
from tidings.cli_base import EXIT_TIMEOUT as EXIT_TIMEOUT
from tidings.cli_base import EXIT_USAGE as EXIT_USAGE
from tidings.cli_base import CliError as CliError
from tidings.cli_base import Outcome as Outcome
from tidings.cli_base import add_serve_parser
from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.errors import ClientError, ConnectionEnded, NotConnected
from tidings.client.types import (
    ConnectionState,
    Conversation,
    Member,
    Message,
    MessageAdded,
    MessageStatus,
    MessageUpdated,
    SearchHit,
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


def _clock(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


# Lines for people live in tidings.cli_render (other people's text made terminal-safe, every
# line naming its chat); re-exported here for the commands of other modules.
message_line = cli_render.message_line
conversation_line = cli_render.conversation_line
conversation_text = cli_render.conversation_text


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
async def _opened(profile: Path) -> AsyncIterator[Client]:
    client = await Client.open(profile)
    try:
        yield client
    finally:
        await client.close()


def _unreachable(exc: NotConnected) -> CliError:
    """A server that cannot be reached, with the cause (refused, DNS, wrong scheme, ...)."""
    return CliError("not_connected", exc.message)


async def _connect(client: Client, within: float) -> None:
    """Start the client and wait for the initial sync with the server; a first connect that
    waiting cannot fix (refused, DNS, wrong scheme) fails at once."""
    await client.start()
    try:
        await client.wait_synced(timeout=within, fail_fast=True)
    except (TimeoutError, NotConnected) as exc:
        if isinstance(exc, NotConnected) and exc.cause in HOPELESS_CAUSES:
            raise _unreachable(exc) from exc
        raise CliError(
            "timeout",
            f"could not sync with {client.account.server_url} within {within:g} s",
            EXIT_TIMEOUT,
        ) from exc


def _check_ended(client: Client) -> None:
    """Fail (exit 1) when the connection ended for good: the device was removed or its token
    is invalid, another connection took over, or Tidings must be updated."""
    connection = client.connection
    if connection.state is ConnectionState.CLOSED:
        reason = connection.last_error or "the connection ended"
        raise ConnectionEnded(connection.close_code or 0, reason)


def _parse_message_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise CliError("bad_argument", f"not a message id: {text!r}") from exc


def _text_arg(text: str) -> str:
    """A message text argument: ``-`` reads it from standard input (one trailing newline
    dropped, so ``echo hi | tidings send @bob -`` sends "hi")."""
    if text != "-":
        return text
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def _group_id(text: str) -> str:
    return text[1:] if text.startswith("#") else text


def _username(text: str) -> str:
    return text[1:] if text.startswith("@") else text


async def _resolve(client: Client, target: str) -> Conversation:
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


async def _own_pending(client: Client) -> set[uuid.UUID]:
    """Own messages still ``sending`` in the newest page of every conversation."""
    pending: set[uuid.UUID] = set()
    for conv in await client.conversations():
        page = await client.history(conv.id, limit=200)
        for message in page.messages:
            if message.is_own and message.status == MessageStatus.SENDING:
                pending.add(message.id)
    return pending


async def _all_left_sending(client: Client, ids: set[uuid.UUID]) -> bool:
    for message_id in ids:
        message = await client.message(message_id)
        if message is not None and message.status == MessageStatus.SENDING:
            return False
    return True


# --------------------------------------------------------------------------- commands


def _account_summary(client: Client, profile: str) -> dict[str, object]:
    """What `account create` and `device link` print about the device they set up."""
    account = client.account
    return {
        "account_id": account.account_id,
        "username": account.username,
        "device_id": account.device_id,
        "server_url": account.server_url,
        "profile": profile,
    }


def _connection_config(args: argparse.Namespace) -> ClientConfig:
    """``--insecure`` and ``--ca-file``; the profile remembers them (client/tls.py)."""
    return ClientConfig(insecure=args.insecure, ca_file=args.ca_file)


def _connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain http:// to a host that is not loopback (a network you trust)",
    )
    p.add_argument(
        "--ca-file", default=None, help="PEM CA certificates to trust (default: certifi's)"
    )


async def cmd_account_create(args: argparse.Namespace) -> Outcome:
    client = await Client.create_account(
        Path(args.profile),
        args.server,
        args.username,
        device_name=args.device_name,
        config=_connection_config(args),
        invite=args.invite,
    )
    try:
        account = client.account
        data = _account_summary(client, args.profile)
    finally:
        await client.close()
    return Outcome(data, f"created @{account.username} (device {account.device_id})")


async def cmd_device_link(args: argparse.Namespace) -> Outcome:
    """A new device: print the link code, wait until a device of the account approves it."""
    as_json = bool(getattr(args, "json", False))

    def show(code: str) -> None:
        if as_json:
            print(json.dumps({"link_code": code}), flush=True)
        else:
            print(f"link code: {code}", flush=True)
            print("approve it on a device of the account:", flush=True)
            print(f"  tidings device approve --profile <that profile> {code}", flush=True)

    client = await Client.link_device(
        Path(args.profile),
        args.server,
        args.name,
        on_code=show,
        patience=args.timeout,
        config=_connection_config(args),
    )
    try:
        account = client.account
        data = _account_summary(client, args.profile)
    finally:
        await client.close()
    return Outcome(data, f"linked to @{account.username} as device {account.device_id}")


async def cmd_device_remove(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        await client.remove_device(args.device_id)
    return Outcome({"device_id": args.device_id}, f"removed device {args.device_id}")


async def cmd_device_approve(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        device_id = await client.approve_device(args.code, args.name)
    return Outcome({"device_id": device_id}, f"approved device {device_id}")


async def cmd_safety(args: argparse.Namespace) -> Outcome:
    username = _username(args.user)
    async with _opened(Path(args.profile)) as client:
        safety = await client.safety(username)
    number, verified = safety.number, safety.verified
    groups = " ".join(number[i : i + 5] for i in range(0, len(number), 5))
    state = "verified" if verified else "not verified"
    text = f"safety number with @{username} ({state}):\n{groups}"
    if not safety.online:
        checked = "never" if safety.checked_at is None else _clock(safety.checked_at)
        text += (
            f"\noffline: the identity key stored for @{username};"
            f" last checked against the server: {checked}"
        )
    return Outcome(
        {
            "username": username,
            "safety_number": number,
            "verified": verified,
            "online": safety.online,
            "checked_at": safety.checked_at,
        },
        text,
    )


async def cmd_verify(args: argparse.Namespace) -> Outcome:
    username = _username(args.user)
    async with _opened(Path(args.profile)) as client:
        if args.undo:
            await client.unverify(username)
        else:
            await client.verify(username)
    word = "no longer verified" if args.undo else "verified"
    return Outcome({"username": username, "verified": not args.undo}, f"@{username} {word}")


async def cmd_send(args: argparse.Namespace) -> Outcome:
    if args.file is not None or args.voice is not None:  # an attachment (cli_media.py)
        from tidings.cli_media import cmd_send_media

        return await cmd_send_media(args)
    if args.text is None:
        raise CliError("usage", "send: give a text, --file PATH or --voice PATH", EXIT_USAGE)
    reply_to = _parse_message_id(args.reply_to) if args.reply_to else None
    async with _opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await client.start()
        conv = await _resolve(client, args.target)
        sent = await client.send_text(conv.id, _text_arg(args.text), reply_to=reply_to)
        current: list[Message] = [sent]

        async def left_sending() -> bool:
            message = await client.message(sent.id)
            if message is not None:
                current[0] = message
            return current[0].status != MessageStatus.SENDING

        await watch.until(left_sending, args.wait)
        message = current[0]
    if message.status == MessageStatus.FAILED:
        raise CliError(
            message.fail_reason or "failed", f"message {message.id} was refused by the server"
        )
    outcome = Outcome(
        {
            "id": str(message.id),
            "conv_id": message.conv_id,
            "seq": message.seq,
            "status": str(message.status),
        },
        str(message.id),
    )
    if message.status == MessageStatus.SENDING:
        outcome.warnings.append(
            f"not acknowledged within {args.wait:g} s: kept in the outbox, "
            "`tidings sync` sends it later"
        )
    return outcome


async def cmd_sync(args: argparse.Namespace) -> Outcome:
    if getattr(args, "follow", False):  # one JSON object per message, as they arrive
        from tidings.cli_everyday import cmd_follow

        return await cmd_follow(args)
    if args.once:  # one bounded sync, as a push wake-up runs it
        from tidings.cli_push import cmd_sync_once

        return await cmd_sync_once(args)
    warnings: list[str] = []
    async with _opened(Path(args.profile)) as client, EventWatch(client) as watch:
        pending = await _own_pending(client)
        await client.start()
        if args.for_seconds is not None:

            async def ended() -> bool:  # stop at once when the connection ended for good
                return client.connection.state is ConnectionState.CLOSED

            await watch.until(ended, args.for_seconds)
            _check_ended(client)
            synced = watch.synced
        else:
            try:
                await client.wait_synced(timeout=args.timeout, fail_fast=True)
                synced = True
            except NotConnected as exc:
                if exc.cause in HOPELESS_CAUSES:
                    raise _unreachable(exc) from exc
                synced = False
            except TimeoutError:
                synced = False
            if synced:

                async def idle() -> bool:
                    quiet = time.monotonic() - watch.last_event >= IDLE_SECONDS
                    return quiet and await _all_left_sending(client, pending)

                if not await watch.until(idle, args.timeout):
                    left = [i for i in pending if not await _all_left_sending(client, {i})]
                    if left:
                        warnings.append(f"{len(left)} own messages still in the outbox")
        # Read back what the events showed: the stored row is the settled state (names of
        # members resolved, newest status).
        added = [await client.message(i) or m for i, m in watch.added.items()]
        updated = [await client.message(i) or m for i, m in watch.updated.items()]
        names = await _chat_names(client, [m.conv_id for m in added + updated])
    if not synced and args.for_seconds is None:
        raise CliError(
            "timeout",
            f"could not sync with the server within {args.timeout:g} s",
            EXIT_TIMEOUT,
        )
    added.sort(key=lambda m: (m.conv_id, m.seq if m.seq is not None else 1 << 62))
    lines = [message_line(m, names.get(m.conv_id)) for m in added]
    lines += [
        f"updated {message_line(m, names.get(m.conv_id))}" for m in updated if m.kind == "text"
    ]
    if not lines:
        lines.append("nothing new")
    data = {
        "synced": synced,
        "messages": [message_json(m) for m in added],
        "updates": [message_json(m) for m in updated],
    }
    return Outcome(data, "\n".join(lines), warnings=warnings)


async def cmd_history(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        conv = await _resolve(client, args.target)
        page = await client.history(conv.id, before=args.before, limit=args.limit)
    chat = cli_render.chat_name(conv)
    text = "\n".join(message_line(m, chat) for m in page.messages) or f"{chat}: no messages"
    if page.before is not None:
        text += f"\n(older: --before {page.before})"
    data = {
        "conv_id": conv.id,
        "messages": [message_json(m) for m in page.messages],
        "before": page.before,
    }
    return Outcome(data, text)


async def _chat_names(client: Client, conv_ids: Sequence[str]) -> dict[str, str]:
    """How lines name each of these chats (see :func:`tidings.cli_render.chat_name`)."""
    names: dict[str, str] = {}
    for conv_id in dict.fromkeys(conv_ids):
        try:
            names[conv_id] = cli_render.chat_name(await client.conversation(conv_id))
        except ClientError:
            names[conv_id] = cli_render.chat_name(None)
    return names


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {"message": message_json(hit.message), "snippet": hit.snippet}


async def cmd_search(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        hits = await client.search(args.query, limit=args.limit)
        names = await _chat_names(client, [h.message.conv_id for h in hits])
        mode = client.search_mode
    note = "note: this SQLite has no FTS5; searching by a slower scan\n" if mode == "scan" else ""
    text = "\n".join(
        f"{names[h.message.conv_id]} [{h.message.seq}] "
        f"{'me' if h.message.is_own else cli_render.safe(h.message.sender_name)}: "
        f"{cli_render.safe_body(h.snippet)}{cli_render.unverified(h.message)}  {h.message.id}"
        for h in hits
    )
    return Outcome({"hits": [_hit_json(h) for h in hits]}, note + (text or "no matches"))


async def cmd_read(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        await _connect(client, args.timeout)
        conv = await _resolve(client, args.target)
        await client.mark_read(conv.id)
        conv = await client.conversation(conv.id)
    return Outcome(
        {"conv_id": conv.id, "unread": conv.unread}, f"marked {cli_render.chat_name(conv)} read"
    )


async def cmd_status(args: argparse.Namespace) -> Outcome:
    message_id = _parse_message_id(args.message_id)
    async with _opened(Path(args.profile)) as client:
        message = await client.message(message_id)
    if message is None:
        raise CliError("not_found", f"no message {message_id} in this profile")
    data = {
        "id": str(message.id),
        "conv_id": message.conv_id,
        "seq": message.seq,
        "status": str(message.status),
        "fail_reason": message.fail_reason,
    }
    return Outcome(data, str(message.status))


async def cmd_react(args: argparse.Namespace) -> Outcome:
    target = _parse_message_id(args.message_id)
    async with _opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await _connect(client, args.timeout)
        conv = await _resolve(client, args.target)
        if await client.message(target) is None:
            raise CliError("not_found", f"no message {target} in this profile")
        await client.react(conv.id, target, args.emoji, remove=args.remove)

        async def quiet() -> bool:
            return time.monotonic() - watch.last_event >= IDLE_SECONDS

        await watch.until(quiet, args.timeout)
        message = await client.message(target)
    assert message is not None
    verb = "removed" if args.remove else "added"
    return Outcome(message_json(message), f"{verb} {args.emoji} on {target}")


async def cmd_group_create(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        await _connect(client, args.timeout)
        conv = await client.create_group(args.title, [_username(u) for u in args.members])
    return Outcome(conversation_json(conv), conv.id)


async def cmd_group_add(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        await _connect(client, args.timeout)
        conv = await client.add_members(_group_id(args.group), [_username(u) for u in args.users])
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_group_remove(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        await _connect(client, args.timeout)
        conv = await client.remove_member(_group_id(args.group), _username(args.user))
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_group_leave(args: argparse.Namespace) -> Outcome:
    group = _group_id(args.group)
    async with _opened(Path(args.profile)) as client:
        await _connect(client, args.timeout)
        await client.leave_group(group)
    return Outcome({"conv_id": group, "left": True}, f"left #{group}")


async def cmd_group_info(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        conv = await client.conversation(_group_id(args.group))
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_settings_group_adds(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        if args.who is None:
            who = await client.group_adds()
        else:
            who = await client.set_group_adds(args.who)
    text = {
        "everyone": "anybody can add you to groups",
        "contacts": "only your contacts (people you have written to) can add you to groups",
    }[who]
    return Outcome({"group_adds": who}, text)


async def cmd_conversations(args: argparse.Namespace) -> Outcome:
    async with _opened(Path(args.profile)) as client:
        convs = await client.conversations()
    text = "\n".join(conversation_line(c) for c in convs) or "no conversations"
    return Outcome({"conversations": [conversation_json(c) for c in convs]}, text)


def cmd_app(args: argparse.Namespace) -> Outcome:
    try:
        import kivy  # noqa: F401
    except ImportError as exc:
        raise CliError(
            "kivy_missing",
            "the app needs Kivy: pip install 'tidings[app]' (kivy[base]==2.3.1)",
        ) from exc
    from tidings.app.main import run

    run(args.server, Path(args.profile))
    return Outcome({"stopped": True}, "app closed")


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so usage errors can be reported as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise CliError("usage", f"{self.prog}: {message}", EXIT_USAGE)


AsyncCommand = Callable[[argparse.Namespace], Coroutine[Any, Any, Outcome]]
SyncCommand = Callable[[argparse.Namespace], Outcome]


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    profile = _Parser(add_help=False)
    profile.add_argument(
        "--profile",
        default=None,
        help="profile directory (default: $TIDINGS_PROFILE, else the user data directory)",
    )
    waits = _Parser(add_help=False)
    waits.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the server"
    )

    parser = _Parser(
        prog="tidings", description="Tidings messenger: server and command-line client"
    )
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"tidings {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add_serve_parser(sub, common)

    account = sub.add_parser("account", help="accounts").add_subparsers(
        dest="account_command", required=True, parser_class=_Parser
    )
    p = account.add_parser("create", parents=[common, profile], help="create an account")
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--device-name", default="primary")
    p.add_argument("--invite", default=None, help="an invite token from the server's operator")
    _connection_options(p)
    p.add_argument("username")
    p.set_defaults(handler=cmd_account_create)

    p = sub.add_parser("send", parents=[common, profile], help="send a message or a file")
    p.add_argument("target", help="@user or #group-id")
    p.add_argument("text", nargs="?", help="the text; - reads it from standard input")
    p.add_argument("--reply-to", default=None, metavar="MESSAGE-ID")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for 'sent'")
    p.set_defaults(handler=cmd_send)
    from tidings import cli_media  # send --file/--voice, download

    cli_media.add_send_options(p)
    cli_media.add_parsers(sub, common, profile)

    p = sub.add_parser("sync", parents=[common, profile, waits], help="receive new messages")
    p.add_argument("--for", dest="for_seconds", type=float, default=None, metavar="SECONDS")
    p.add_argument(
        "--follow", action="store_true", help="keep running: one JSON line per new message"
    )
    p.add_argument("--once", action="store_true", help="one bounded sync (a push wake-up)")
    p.add_argument("--budget", type=float, default=25.0, help="seconds --once may take")
    p.add_argument("--hint", default="", help="the push's conversation hint: that chat first")
    p.set_defaults(handler=cmd_sync)

    p = sub.add_parser("history", parents=[common, profile], help="show a conversation")
    p.add_argument("target", help="@user or #group-id")
    p.add_argument("--before", type=int, default=None, metavar="SEQ")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("search", parents=[common, profile], help="full-text search")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("read", parents=[common, profile, waits], help="mark a chat read")
    p.add_argument("target", help="@user or #group-id")
    p.set_defaults(handler=cmd_read)

    p = sub.add_parser("status", parents=[common, profile], help="status of an own message")
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("react", parents=[common, profile, waits], help="react to a message")
    p.add_argument("target", help="@user or #group-id")
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.add_argument("emoji")
    p.add_argument("--remove", action="store_true")
    p.set_defaults(handler=cmd_react)

    group = sub.add_parser("group", help="groups").add_subparsers(
        dest="group_command", required=True, parser_class=_Parser
    )
    p = group.add_parser("create", parents=[common, profile, waits], help="create a group")
    p.add_argument("title")
    p.add_argument("members", nargs="*", metavar="@user")
    p.set_defaults(handler=cmd_group_create)
    p = group.add_parser("add", parents=[common, profile, waits], help="add members")
    p.add_argument("group", metavar="GROUP-ID")
    p.add_argument("users", nargs="+", metavar="@user")
    p.set_defaults(handler=cmd_group_add)
    p = group.add_parser("remove", parents=[common, profile, waits], help="remove a member")
    p.add_argument("group", metavar="GROUP-ID")
    p.add_argument("user", metavar="@user")
    p.set_defaults(handler=cmd_group_remove)
    p = group.add_parser("leave", parents=[common, profile, waits], help="leave a group")
    p.add_argument("group", metavar="GROUP-ID")
    p.set_defaults(handler=cmd_group_leave)
    p = group.add_parser("info", parents=[common, profile], help="show a group")
    p.add_argument("group", metavar="GROUP-ID")
    p.set_defaults(handler=cmd_group_info)

    settings = sub.add_parser("settings", help="account settings").add_subparsers(
        dest="settings_command", required=True, parser_class=_Parser
    )
    p = settings.add_parser(
        "group-adds", parents=[common, profile], help="who may add you to groups"
    )
    p.add_argument("who", nargs="?", choices=["everyone", "contacts"], help="omit to show it")
    p.set_defaults(handler=cmd_settings_group_adds)

    device = sub.add_parser("device", help="linked devices").add_subparsers(
        dest="device_command", required=True, parser_class=_Parser
    )
    p = device.add_parser("link", parents=[common, profile], help="link this new device")
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--name", default="linked", help="a name for this device")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for approval")
    _connection_options(p)
    p.set_defaults(handler=cmd_device_link)
    p = device.add_parser("remove", parents=[common, profile], help="remove another device")
    p.add_argument("device_id", type=int, metavar="DEVICE-ID")
    p.set_defaults(handler=cmd_device_remove)
    p = device.add_parser("approve", parents=[common, profile], help="approve a new device")
    p.add_argument("code", metavar="LINK-CODE")
    p.add_argument("--name", default="linked", help="the new device's name")
    p.set_defaults(handler=cmd_device_approve)

    p = sub.add_parser("safety", parents=[common, profile], help="show a safety number")
    p.add_argument("user", metavar="@user")
    p.set_defaults(handler=cmd_safety)
    p = sub.add_parser("verify", parents=[common, profile], help="mark a contact verified")
    p.add_argument("user", metavar="@user")
    p.add_argument("--undo", action="store_true", help="take the verification back")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("conversations", parents=[common, profile], help="the chat list")
    p.set_defaults(handler=cmd_conversations)

    from tidings import cli_push  # push register|clear|show, notify

    cli_push.add_parsers(sub, common, profile)

    from tidings import cli_backup  # backup enable|status|now|export|import, account recover

    cli_backup.add_parsers(sub, common, profile)

    from tidings import cli_everyday  # edit, delete, device list, settings, block, follow

    cli_everyday.add_parsers(sub, common, profile, waits)

    from tidings import cli_channels  # channel create|info|post|subscribe|join|invite|admins

    cli_channels.add_parsers(sub, common, profile, waits)

    from tidings import cli_profiles  # profile, block, device list, settings receipts/typing

    cli_profiles.add_parsers(sub, common, profile, waits, device, settings)

    p = sub.add_parser("app", parents=[common, profile], help="start the Kivy app")
    p.add_argument("--server", default=None, help="server URL to offer when signing up")
    p.set_defaults(sync_handler=cmd_app)
    from tidings.cli_admin import add_admin_parser

    add_admin_parser(sub, common, _Parser)
    return parser


# --------------------------------------------------------------------------- entry point


def _emit_error(err: CliError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"code": err.code, "message": err.message}), file=sys.stderr)
    else:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
    return err.exit_code


def _run(args: argparse.Namespace) -> Outcome:
    sync_handler: SyncCommand | None = getattr(args, "sync_handler", None)
    if sync_handler is not None:
        return sync_handler(args)
    handler: AsyncCommand = args.handler
    return asyncio.run(handler(args))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        as_json = bool(getattr(args, "json", False))
        if getattr(args, "profile", "") is None:
            args.profile = str(cli_everyday_default_profile())
        outcome = _run(args)
    except CliError as err:
        return _emit_error(err, as_json)
    except ClientError as err:
        return _emit_error(CliError(str(err.code), err.message), as_json)
    except KeyboardInterrupt:
        return _emit_error(CliError("interrupted", "interrupted", 130), as_json)
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as err:
        return _emit_error(CliError("os_error", str(err)), as_json)
    for warning in outcome.warnings:
        if as_json:
            print(json.dumps({"warning": warning}), file=sys.stderr)
        else:
            print(f"warning: {warning}", file=sys.stderr)
    try:
        if as_json:
            print(json.dumps(outcome.data, ensure_ascii=False))
        else:
            print(outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `tidings history … | head -1`: the reader has what it wanted
        return _closed_pipe()
    return outcome.exit_code


def _closed_pipe() -> int:
    """Standard output was closed by its reader: stop quietly, exit 0 (no traceback when
    Python flushes stdout at exit)."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _version() -> str:
    try:
        return importlib.metadata.version("tidings")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cli_everyday_default_profile() -> Path:
    from tidings.cli_everyday import default_profile

    return default_profile()


if __name__ == "__main__":
    sys.exit(main())
