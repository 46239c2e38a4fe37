"""The command line's push commands (``tidings push``, ``tidings notify``) and ``tidings sync
--once``, the path a push wake-up runs. Registered by :func:`tidings.cli.main.build_parser`."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from tidings.cli.common import (
    EXIT_TIMEOUT,
    CliError,
    Outcome,
    Parser,
    message_json,
    message_line,
    opened,
    resolve,
)
from tidings.client.push import MUTE_CHOICES, NotificationSetting, PushRegistration, mute_until
from tidings.protocol.push import MUTED_FOREVER

PLATFORMS = ("apns", "fcm", "webpush", "log")


def _registration_json(r: PushRegistration | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "platform": r.platform,
        "token": r.token,
        "p256dh": r.p256dh,
        "auth": r.auth,
        "topic": r.topic,
        "updated_at": r.updated_at,
    }


def _registration_text(r: PushRegistration | None) -> str:
    if r is None:
        return "no push registration: this device is not woken up"
    short = r.token if len(r.token) <= 48 else r.token[:45] + "..."
    return f"push via {r.platform}: {short}" + (f" (topic {r.topic})" if r.topic else "")


async def cmd_push_register(args: argparse.Namespace) -> Outcome:
    token = args.token or args.endpoint
    if not token:
        raise CliError("bad_argument", "give --token (apns, fcm, log) or --endpoint (webpush)")
    async with opened(Path(args.profile)) as client:
        registration = await client.register_push(
            args.platform, token, p256dh=args.p256dh, auth=args.auth, topic=args.topic
        )
    return Outcome(_registration_json(registration), _registration_text(registration))


async def cmd_push_clear(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await client.clear_push()
    return Outcome({"registration": None}, "push registration removed")


async def cmd_push_show(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        registration = await client.push_registration()
        vapid = await client.vapid_key()
    data = {"registration": _registration_json(registration), "vapid_public_key": vapid}
    return Outcome(data, _registration_text(registration))


def setting_text(setting: NotificationSetting) -> str:
    text = {
        "all": "notifies for every message",
        "mentions": "notifies only when you are mentioned",
        "none": "never notifies",
    }[setting.level]
    if setting.muted_until is not None:
        if setting.muted_until >= MUTED_FOREVER:
            text += ", muted"
        else:
            until = datetime.datetime.fromtimestamp(setting.muted_until / 1000).astimezone()
            text += f", muted until {until:%Y-%m-%d %H:%M}"
    return text


async def cmd_notify(args: argparse.Namespace) -> Outcome:
    try:
        muted = mute_until(args.mute) if args.mute else None
    except ValueError as exc:
        raise CliError("bad_argument", str(exc)) from exc
    async with opened(Path(args.profile)) as client:
        conv = await resolve(client, args.chat)
        await client.refresh_all()  # the setting as another device may have left it
        setting = client.notifications(conv.id)
        if args.level is not None or muted is not None or args.unmute:
            level = args.level or setting.level
            setting = await client.set_notifications(conv.id, level, muted)
    data = {"conv_id": conv.id, "level": setting.level, "muted_until": setting.muted_until}
    return Outcome(data, f"{conv.title}: {setting_text(setting)}")


async def cmd_sync_once(args: argparse.Namespace) -> Outcome:
    """``tidings sync --once``: one bounded sync, as a push wake-up runs it."""
    async with opened(Path(args.profile)) as client:
        first = client.conversation_for_hint(args.hint) if args.hint else None
        result = await client.sync_once(budget=args.budget)
        arrived = [await client.message(m.id) or m for m in result.arrived]
    notify = {m.id for m in result.notify}
    arrived.sort(key=lambda m: (m.conv_id != first, m.conv_id, m.seq or 0))
    lines = [("* " if m.id in notify else "  ") + message_line(m) for m in arrived]
    if not lines:
        lines.append("nothing new")
    if not result.complete:
        lines.append(f"not finished within {args.budget:g} s: the rest comes next time")
    data = {
        "synced": result.complete,
        "messages": [message_json(m) for m in arrived],
        "notify": [str(m.id) for m in result.notify],
        "first": first,
    }
    return Outcome(data, "\n".join(lines), exit_code=0 if result.complete else EXIT_TIMEOUT)


def add_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
) -> None:
    """``tidings push register|clear|show`` and ``tidings notify``."""
    push = sub.add_parser("push", help="push wake-ups of this device").add_subparsers(
        dest="push_command", required=True, parser_class=Parser
    )
    p = push.add_parser("register", parents=[common, profile], help="set the registration")
    p.add_argument("platform", choices=PLATFORMS)
    p.add_argument("--token", default="", help="APNs/FCM device token (or a label for log)")
    p.add_argument("--endpoint", default="", help="WebPush/UnifiedPush endpoint URL")
    p.add_argument("--p256dh", default="", help="WebPush subscription key (base64url)")
    p.add_argument("--auth", default="", help="WebPush subscription auth secret (base64url)")
    p.add_argument("--topic", default="", help="APNs bundle id (default: the server's)")
    p.set_defaults(handler=cmd_push_register)
    p = push.add_parser("clear", parents=[common, profile], help="remove the registration")
    p.set_defaults(handler=cmd_push_clear)
    p = push.add_parser("show", parents=[common, profile], help="show the registration")
    p.set_defaults(handler=cmd_push_show)

    p = sub.add_parser(
        "notify", parents=[common, profile], help="a chat's notifications (all devices)"
    )
    p.add_argument("chat", metavar="@user|#conv")
    p.add_argument("level", nargs="?", choices=["all", "mentions", "none"], help="omit to show")
    p.add_argument(
        "--mute", default=None, help=f"mute for {', '.join(MUTE_CHOICES)} (or 30m, 2d, ...)"
    )
    p.add_argument("--unmute", action="store_true", help="end a mute")
    p.set_defaults(handler=cmd_notify)
