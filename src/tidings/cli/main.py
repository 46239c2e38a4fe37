"""The ``tidings`` command line: run a server, or act as a client on a profile directory.

Client commands use only the public :class:`tidings.client.Client` API. Every command takes
``--json``: the result is then one JSON object on stdout and an error is ``{"code", "message"}``
on stderr, with a non-zero exit code either way an error happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

# Shared with a server-only install's command (tidings.command); re-exported for the
# commands of other modules.
from tidings.cli.base import EXIT_ERROR as EXIT_ERROR
from tidings.cli.base import EXIT_OK as EXIT_OK
from tidings.cli.base import EXIT_TIMEOUT as EXIT_TIMEOUT
from tidings.cli.base import EXIT_USAGE as EXIT_USAGE
from tidings.cli.base import CliError as CliError
from tidings.cli.base import Outcome as Outcome
from tidings.cli.base import add_serve_parser, emit_error, version
from tidings.cli.common import (
    DEFAULT_TIMEOUT,
    Parser,
    connect_and_sync,
    conversation_json,
    conversation_line,
    conversation_text,
    group_id,
    opened,
    username_arg,
)
from tidings.cli.messages import (
    cmd_history,
    cmd_react,
    cmd_read,
    cmd_search,
    cmd_send,
    cmd_status,
    cmd_sync,
)
from tidings.cli.render import clock_text
from tidings.client import Client
from tidings.client.api import ClientConfig
from tidings.client.errors import ClientError

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
    async with opened(Path(args.profile)) as client:
        await client.remove_device(args.device_id)
    return Outcome({"device_id": args.device_id}, f"removed device {args.device_id}")


async def cmd_device_approve(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        device_id = await client.approve_device(args.code, args.name)
    return Outcome({"device_id": device_id}, f"approved device {device_id}")


async def cmd_safety(args: argparse.Namespace) -> Outcome:
    username = username_arg(args.user)
    async with opened(Path(args.profile)) as client:
        safety = await client.safety(username)
    number, verified = safety.number, safety.verified
    groups = " ".join(number[i : i + 5] for i in range(0, len(number), 5))
    state = "verified" if verified else "not verified"
    text = f"safety number with @{username} ({state}):\n{groups}"
    if not safety.online:
        checked = "never" if safety.checked_at is None else clock_text(safety.checked_at)
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
    username = username_arg(args.user)
    async with opened(Path(args.profile)) as client:
        if args.undo:
            await client.unverify(username)
        else:
            await client.verify(username)
    word = "no longer verified" if args.undo else "verified"
    return Outcome({"username": username, "verified": not args.undo}, f"@{username} {word}")


async def cmd_group_create(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        conv = await client.create_group(args.title, [username_arg(u) for u in args.members])
    return Outcome(conversation_json(conv), conv.id)


async def cmd_group_add(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        conv = await client.add_members(group_id(args.group), [username_arg(u) for u in args.users])
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_group_remove(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        conv = await client.remove_member(group_id(args.group), username_arg(args.user))
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_group_leave(args: argparse.Namespace) -> Outcome:
    group = group_id(args.group)
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        await client.leave_group(group)
    return Outcome({"conv_id": group, "left": True}, f"left #{group}")


async def cmd_group_info(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        conv = await client.conversation(group_id(args.group))
    return Outcome(conversation_json(conv), conversation_text(conv))


async def cmd_settings_group_adds(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
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
    async with opened(Path(args.profile)) as client:
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


AsyncCommand = Callable[[argparse.Namespace], Coroutine[Any, Any, Outcome]]
SyncCommand = Callable[[argparse.Namespace], Outcome]


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    profile = Parser(add_help=False)
    profile.add_argument(
        "--profile",
        default=None,
        help="profile directory (default: $TIDINGS_PROFILE, else the user data directory)",
    )
    waits = Parser(add_help=False)
    waits.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the server"
    )

    parser = Parser(prog="tidings", description="Tidings messenger: server and command-line client")
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"tidings {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    add_serve_parser(sub, common)

    account = sub.add_parser("account", help="accounts").add_subparsers(
        dest="account_command", required=True, parser_class=Parser
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
    from tidings.cli import media  # send --file/--voice, download

    media.add_send_options(p)
    media.add_parsers(sub, common, profile)

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
        dest="group_command", required=True, parser_class=Parser
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
        dest="settings_command", required=True, parser_class=Parser
    )
    p = settings.add_parser(
        "group-adds", parents=[common, profile], help="who may add you to groups"
    )
    p.add_argument("who", nargs="?", choices=["everyone", "contacts"], help="omit to show it")
    p.set_defaults(handler=cmd_settings_group_adds)

    device = sub.add_parser("device", help="linked devices").add_subparsers(
        dest="device_command", required=True, parser_class=Parser
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

    from tidings.cli import push  # push register|clear|show, notify

    push.add_parsers(sub, common, profile)

    from tidings.cli import backup  # backup enable|status|now|export|import, account recover

    backup.add_parsers(sub, common, profile)

    from tidings.cli import everyday  # edit, delete, device list, settings, block, follow

    everyday.add_parsers(sub, common, profile, waits)

    from tidings.cli import channels  # channel create|info|post|subscribe|join|invite|admins

    channels.add_parsers(sub, common, profile, waits)

    from tidings.cli import profiles  # profile, block, device list, settings receipts/typing

    profiles.add_parsers(sub, common, profile, waits, device, settings)

    p = sub.add_parser("app", parents=[common, profile], help="start the Kivy app")
    p.add_argument("--server", default=None, help="server URL to offer when signing up")
    p.set_defaults(sync_handler=cmd_app)
    from tidings.cli.admin import add_admin_parser

    add_admin_parser(sub, common, Parser)
    return parser


# --------------------------------------------------------------------------- entry point


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
            args.profile = str(everyday_default_profile())
        outcome = _run(args)
    except CliError as err:
        return emit_error(err, as_json)
    except ClientError as err:
        return emit_error(CliError(str(err.code), err.message), as_json)
    except KeyboardInterrupt:
        return emit_error(CliError("interrupted", "interrupted", 130), as_json)
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as err:
        return emit_error(CliError("os_error", str(err)), as_json)
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


def everyday_default_profile() -> Path:
    from tidings.cli.everyday import default_profile

    return default_profile()


if __name__ == "__main__":
    sys.exit(main())
