"""The command line's message commands: ``send``, ``sync``, ``history``, ``search``, ``read``,
``status`` and ``react``. Registered by :func:`tidings.cli.main.build_parser`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.cli import render

# Shared with a server-only install's command (tidings.command); re-exported for the
# commands of other modules.
from tidings.cli.base import EXIT_ERROR as EXIT_ERROR
from tidings.cli.base import EXIT_OK as EXIT_OK
from tidings.cli.base import EXIT_TIMEOUT as EXIT_TIMEOUT
from tidings.cli.base import EXIT_USAGE as EXIT_USAGE
from tidings.cli.base import CliError as CliError
from tidings.cli.base import Outcome as Outcome
from tidings.cli.common import (
    HOPELESS_CAUSES,
    IDLE_SECONDS,
    EventWatch,
    all_left_sending,
    check_ended,
    connect_and_sync,
    message_json,
    message_line,
    opened,
    own_pending,
    parse_message_id,
    resolve,
    text_arg,
    unreachable,
)
from tidings.client import Client
from tidings.client.errors import ClientError, NotConnected
from tidings.client.types import (
    ConnectionState,
    Message,
    MessageStatus,
    SearchHit,
)


async def cmd_send(args: argparse.Namespace) -> Outcome:
    if args.file is not None or args.voice is not None:  # an attachment (media.py)
        from tidings.cli.media import cmd_send_media

        return await cmd_send_media(args)
    if args.text is None:
        raise CliError("usage", "send: give a text, --file PATH or --voice PATH", EXIT_USAGE)
    reply_to = parse_message_id(args.reply_to) if args.reply_to else None
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await client.start()
        conv = await resolve(client, args.target)
        sent = await client.send_text(conv.id, text_arg(args.text), reply_to=reply_to)
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
        from tidings.cli.everyday import cmd_follow

        return await cmd_follow(args)
    if args.once:  # one bounded sync, as a push wake-up runs it
        from tidings.cli.push import cmd_sync_once

        return await cmd_sync_once(args)
    warnings: list[str] = []
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        pending = await own_pending(client)
        await client.start()
        if args.for_seconds is not None:

            async def ended() -> bool:  # stop at once when the connection ended for good
                return client.connection.state is ConnectionState.CLOSED

            await watch.until(ended, args.for_seconds)
            check_ended(client)
            synced = watch.synced
        else:
            try:
                await client.wait_synced(timeout=args.timeout, fail_fast=True)
                synced = True
            except NotConnected as exc:
                if exc.cause in HOPELESS_CAUSES:
                    raise unreachable(exc) from exc
                synced = False
            except TimeoutError:
                synced = False
            if synced:

                async def idle() -> bool:
                    quiet = time.monotonic() - watch.last_event >= IDLE_SECONDS
                    return quiet and await all_left_sending(client, pending)

                if not await watch.until(idle, args.timeout):
                    left = [i for i in pending if not await all_left_sending(client, {i})]
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
    async with opened(Path(args.profile)) as client:
        conv = await resolve(client, args.target)
        page = await client.history(conv.id, before=args.before, limit=args.limit)
    chat = render.chat_name(conv)
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
    """How lines name each of these chats (see :func:`tidings.cli.render.chat_name`)."""
    names: dict[str, str] = {}
    for conv_id in dict.fromkeys(conv_ids):
        try:
            names[conv_id] = render.chat_name(await client.conversation(conv_id))
        except ClientError:
            names[conv_id] = render.chat_name(None)
    return names


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {"message": message_json(hit.message), "snippet": hit.snippet}


async def cmd_search(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        hits = await client.search(args.query, limit=args.limit)
        names = await _chat_names(client, [h.message.conv_id for h in hits])
        mode = client.search_mode
    note = "note: this SQLite has no FTS5; searching by a slower scan\n" if mode == "scan" else ""
    text = "\n".join(
        f"{names[h.message.conv_id]} [{h.message.seq}] "
        f"{'me' if h.message.is_own else render.safe(h.message.sender_name)}: "
        f"{render.safe_body(h.snippet)}{render.unverified(h.message)}  {h.message.id}"
        for h in hits
    )
    return Outcome({"hits": [_hit_json(h) for h in hits]}, note + (text or "no matches"))


async def cmd_read(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        conv = await resolve(client, args.target)
        await client.mark_read(conv.id)
        conv = await client.conversation(conv.id)
    return Outcome(
        {"conv_id": conv.id, "unread": conv.unread}, f"marked {render.chat_name(conv)} read"
    )


async def cmd_status(args: argparse.Namespace) -> Outcome:
    message_id = parse_message_id(args.message_id)
    async with opened(Path(args.profile)) as client:
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
    target = parse_message_id(args.message_id)
    async with opened(Path(args.profile)) as client, EventWatch(client) as watch:
        await connect_and_sync(client, args.timeout)
        conv = await resolve(client, args.target)
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
