"""The command line's everyday commands: ``edit``, ``delete``, ``note``, ``info``,
``device list``, ``settings read-receipts|typing``, ``block``/``unblock``/``blocked`` and
``sync --follow`` (one JSON object per message as it arrives, for bots and scripts), plus the
default profile. Registered by :func:`tidings.cli.main.build_parser`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import platformdirs

from tidings.cli import render
from tidings.cli.common import (
    EXIT_OK,
    IDLE_SECONDS,
    EventWatch,
    Outcome,
    connect_and_sync,
    message_json,
    message_line,
    opened,
    parse_message_id,
    resolve,
    text_arg,
)
from tidings.client import Client
from tidings.client.types import MessageAdded, MessageUpdated

#: the environment variable naming the profile directory when --profile is not given
PROFILE_ENV = "TIDINGS_PROFILE"


def default_profile() -> Path:
    """``$TIDINGS_PROFILE``, else ``profile`` in the user data directory (platformdirs: e.g.
    ``~/.local/share/tidings/profile``)."""
    named = os.environ.get(PROFILE_ENV)
    if named:
        return Path(named)
    return Path(platformdirs.user_data_dir("tidings", appauthor=False)) / "profile"


async def _settle(client: Client, watch: EventWatch, within: float) -> None:
    """Wait until the server took everything sent (an edit or deletion has no row of its own
    whose status could be watched) and the events went quiet."""

    async def quiet() -> bool:
        return client.sending() == 0 and time.monotonic() - watch.last_event >= IDLE_SECONDS

    await watch.until(quiet, within)


async def cmd_edit(args: argparse.Namespace) -> Outcome:
    target = parse_message_id(args.message_id)
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await connect_and_sync(client, args.timeout)
        message = await client.edit(target, text_arg(args.text))
        await _settle(client, watch, args.timeout)
        message = await client.message(target) or message
    return Outcome(message_json(message), f"edited {target}")


async def cmd_delete(args: argparse.Namespace) -> Outcome:
    target = parse_message_id(args.message_id)
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        if args.for_me:
            await client.delete_for_me(target)
            return Outcome({"id": str(target), "deleted": "for_me"}, f"deleted {target} here")
        await connect_and_sync(client, args.timeout)
        await client.delete_for_everyone(target)
        await _settle(client, watch, args.timeout)
    return Outcome({"id": str(target), "deleted": "for_everyone"}, f"deleted {target}")


async def cmd_info(args: argparse.Namespace) -> Outcome:
    target = parse_message_id(args.message_id)
    async with opened(Path(args.profile)) as client:
        details = await client.message_details(target)
        chat = render.chat_name(await client.conversation(details.message.conv_id))
    lines = [message_line(details.message, chat)]
    for receipt in details.receipts:
        state = "read" if receipt.read else "delivered" if receipt.delivered else "sent"
        lines.append(f"  {render.safe(receipt.name)}: {state}")
    for body, at in details.edits:
        lines.append(f"  earlier ({render.clock_text(at)}): {render.safe_body(body)}")
    data = {
        "message": message_json(details.message),
        "receipts": [
            {
                "account_id": r.account_id,
                "name": r.name,
                "delivered": r.delivered,
                "read": r.read,
            }
            for r in details.receipts
        ],
        "edits": [{"body": b, "at": at} for b, at in details.edits],
    }
    return Outcome(data, "\n".join(lines))


async def cmd_note(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        conv = await client.note_to_self()
    return Outcome({"conv_id": conv.id, "title": conv.title}, render.chat_name(conv))


async def cmd_unread(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        conv = await resolve(client, args.target)
        marker = await client.unread_marker(conv.id)
    first = None if marker.first_unread is None else str(marker.first_unread)
    text = f"{render.chat_name(conv)}: {marker.count} unread"
    if first is not None:
        text += f", from {first}"
    return Outcome({"conv_id": conv.id, "count": marker.count, "first_unread": first}, text)


async def cmd_follow(args: argparse.Namespace) -> Outcome:
    """``sync --follow``: print every message that arrives, one JSON object per line, until
    interrupted or the reader goes away (then exit 0)."""
    async with opened(Path(args.profile)) as client:
        events = client.events()
        await client.start()
        names: dict[str, str] = {}
        async for event in events:
            if not isinstance(event, MessageAdded | MessageUpdated):
                continue
            message = event.message
            if message.conv_id not in names:
                with contextlib.suppress(Exception):
                    conv = await client.conversation(message.conv_id)
                    names[message.conv_id] = conv.title
            record = message_json(message)
            record["event"] = "added" if isinstance(event, MessageAdded) else "updated"
            record["chat"] = names.get(message.conv_id, "")
            print(json.dumps(record, ensure_ascii=False), flush=True)
    return Outcome({}, "", EXIT_OK)


def add_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
    waits: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser("edit", parents=[common, profile, waits], help="edit an own message (24 h)")
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.add_argument("text", help="the new text, or - to read it from standard input")
    p.set_defaults(handler=cmd_edit)

    p = sub.add_parser("delete", parents=[common, profile, waits], help="delete a message")
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.add_argument(
        "--for-me", action="store_true", help="only on this device (any message, any time)"
    )
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("info", parents=[common, profile], help="details of a message")
    p.add_argument("message_id", metavar="MESSAGE-ID")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("note", parents=[common, profile, waits], help="your note to self")
    p.set_defaults(handler=cmd_note)

    p = sub.add_parser("unread", parents=[common, profile], help="where unread messages start")
    p.add_argument("target", help="@user or #group-id")
    p.set_defaults(handler=cmd_unread)
