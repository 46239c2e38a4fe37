"""The command line's profile, blocking and privacy commands: ``profile set|show``,
``block``/``unblock``/``blocked``, ``device list`` and ``settings read-receipts|typing``.
Registered by :func:`tidings.cli.main.build_parser`."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from pathlib import Path
from typing import Any

from tidings.cli import render
from tidings.cli.common import EXIT_USAGE, CliError, Outcome, connect_and_sync, opened
from tidings.client import Client
from tidings.client.errors import ClientError
from tidings.client.types import Profile


async def _sent(client: Client, within: float) -> None:
    """Wait until the server took what was queued (profile keys have no row to watch)."""
    deadline = time.monotonic() + within
    while client.sending() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def _profile_json(profile: Profile) -> dict[str, Any]:
    return {
        "account_id": profile.account_id,
        "username": profile.username,
        "name": profile.name,
        "about": profile.about,
        "avatar": base64.b64encode(profile.avatar).decode() if profile.avatar else None,
        "avatar_bytes": len(profile.avatar) if profile.avatar else 0,
        "version": profile.version,
        "has_key": profile.has_key,
    }


def _profile_text(profile: Profile) -> str:
    lines = [f"{render.safe(profile.name)} (@{profile.username})"]
    if profile.about:
        lines.append(f"  {render.safe(profile.about)}")
    if profile.avatar:
        lines.append(f"  avatar: {len(profile.avatar)} bytes JPEG")
    if not profile.has_key:
        lines.append("  (no profile key from them yet: only the username is known)")
    return "\n".join(lines)


def _avatar_path(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ClientError("not_found", f"no such file: {path}")
    return path


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


async def cmd_profile_set(args: argparse.Namespace) -> Outcome:
    if args.name is None and args.about is None and args.avatar is None and not args.no_avatar:
        raise CliError(
            "usage", "say what to change: --name, --about, --avatar or --no-avatar", EXIT_USAGE
        )
    avatar = _avatar_path(args.avatar)
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        profile = await client.set_profile(
            args.name, args.about, avatar, remove_avatar=args.no_avatar
        )
        await _sent(client, args.timeout)
    return Outcome(_profile_json(profile), _profile_text(profile))


async def cmd_profile_show(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        profile = await client.profile_of(args.user)
        if args.avatar_out and profile.avatar:
            _write(args.avatar_out, profile.avatar)
    return Outcome(_profile_json(profile), _profile_text(profile))


async def cmd_block(args: argparse.Namespace) -> Outcome:
    user = args.user.removeprefix("@")
    async with opened(Path(args.profile)) as client:
        if args.undo:
            await client.unblock(user)
            return Outcome({"username": user, "blocked": False}, f"unblocked @{user}")
        await connect_and_sync(client, args.timeout)
        await client.block(user)
        await _sent(client, args.timeout)  # the rotated profile key to everyone else
    return Outcome({"username": user, "blocked": True}, f"blocked @{user}")


async def cmd_blocked(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        names = await client.blocked()
    text = "\n".join(f"@{n}" for n in names) or "nobody is blocked"
    return Outcome({"blocked": names}, text)


async def cmd_device_list(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        devices = await client.devices()
    lines = []
    for d in devices:
        seen = "never connected"
        if d.last_seen is not None:
            seen = f"seen {render.clock_text(d.last_seen)}"
        here = " (this device)" if d.current else ""
        added = render.clock_text(d.created_at)
        lines.append(f"{d.device_id}  {render.safe(d.name)}{here}  added {added}, {seen}")
    data = {
        "devices": [
            {
                "device_id": d.device_id,
                "name": d.name,
                "created_at": d.created_at,
                "last_seen": d.last_seen,
                "current": d.current,
            }
            for d in devices
        ]
    }
    return Outcome(data, "\n".join(lines))


async def cmd_settings_read_receipts(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        if args.state is None:
            on = await client.read_receipts()
        else:
            on = await client.set_read_receipts(args.state == "on")
    text = (
        "read receipts on: others see when you read, you see when they do"
        if on
        else "read receipts off: nobody sees when you read, and you do not see when they do"
    )
    return Outcome({"read_receipts": on}, text)


async def cmd_settings_typing(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        if args.state is None:
            on = await client.typing_indicators()
        else:
            on = await client.set_typing_indicators(args.state == "on")
    return Outcome({"typing_indicators": on}, f"typing indicators {'on' if on else 'off'}")


def add_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
    waits: argparse.ArgumentParser,
    device: Any,
    settings: Any,
) -> None:
    group = sub.add_parser("profile", help="your profile and others'").add_subparsers(
        dest="profile_command", required=True
    )
    p = group.add_parser("set", parents=[common, profile, waits], help="change your profile")
    p.add_argument("--name", default=None, help="display name (at most 64 characters)")
    p.add_argument("--about", default=None, help="about text (at most 280 characters)")
    p.add_argument("--avatar", default=None, metavar="PATH", help="a picture (made ≤ 256 px)")
    p.add_argument("--no-avatar", action="store_true", help="remove the avatar")
    p.set_defaults(handler=cmd_profile_set)
    p = group.add_parser("show", parents=[common, profile], help="show a profile")
    p.add_argument("user", nargs="?", default=None, metavar="@user", help="omit for your own")
    p.add_argument("--avatar-out", default=None, metavar="PATH", help="write the avatar here")
    p.set_defaults(handler=cmd_profile_show)

    p = sub.add_parser("block", parents=[common, profile, waits], help="block an account")
    p.add_argument("user", metavar="@user")
    p.set_defaults(handler=cmd_block, undo=False)
    p = sub.add_parser("unblock", parents=[common, profile, waits], help="unblock an account")
    p.add_argument("user", metavar="@user")
    p.set_defaults(handler=cmd_block, undo=True)
    p = sub.add_parser("blocked", parents=[common, profile], help="accounts you block")
    p.set_defaults(handler=cmd_blocked)

    p = device.add_parser("list", parents=[common, profile], help="this account's devices")
    p.set_defaults(handler=cmd_device_list)

    p = settings.add_parser(
        "read-receipts", parents=[common, profile], help="send (and see) read receipts"
    )
    p.add_argument("state", nargs="?", choices=["on", "off"], help="omit to show it")
    p.set_defaults(handler=cmd_settings_read_receipts)
    p = settings.add_parser("typing", parents=[common, profile], help="typing indicators")
    p.add_argument("state", nargs="?", choices=["on", "off"], help="omit to show it")
    p.set_defaults(handler=cmd_settings_typing)
