"""The command line's broadcast channels (``tidings channel ...``; docs/client-api.md
"Channels"). Registered by :func:`tidings.cli.main.build_parser`. Channels also appear in
``conversations`` (as ``#Title (channel)``), their posts in ``history #<id>`` and ``search``,
marked ``(unverified)`` when the signature did not check out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tidings.cli.common import (
    CliError,
    Outcome,
    Parser,
    connect_and_sync,
    message_json,
    message_line,
    opened,
)
from tidings.cli.render import safe
from tidings.client import Client
from tidings.client.channels import Channel


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "title": channel.title,
        "handle": channel.handle,
        "public": channel.public,
        "description": channel.description,
        "owner": channel.owner,
        "admins": [
            {"account_id": a.account_id, "username": a.username, "role": a.role}
            for a in channel.admins
        ],
        "subscribers": channel.subscribers,
        "head": channel.head,
        "role": channel.role,
        "notify": channel.notify,
    }


def channel_text(channel: Channel) -> str:
    kind = "public" if channel.public else "private"
    handle = f"  @{safe(channel.handle)}" if channel.handle else ""
    lines = [f"#{safe(channel.title)} (channel, {kind}){handle}  [#{channel.id}]"]
    if channel.description:
        lines.append(safe(channel.description))
    lines.append(f"{channel.subscribers} subscribers; you: {channel.role or 'not subscribed'}")
    lines.append("admins: " + ", ".join(f"@{safe(a.username)} ({a.role})" for a in channel.admins))
    return "\n".join(lines)


async def _channel_id(client: Client, target: str) -> str:
    """``#id``, ``#Title`` of a channel this device knows, or ``@handle`` of a public one."""
    if target.startswith("@") and len(target) > 1:
        return (await client.find_channel(target[1:])).id
    wanted = target.removeprefix("#")
    convs = [c for c in await client.conversations() if c.kind == "channel"]
    for conv in convs:
        if conv.id == wanted:
            return conv.id
    titled = [c.id for c in convs if c.title == wanted]
    if len(titled) == 1:
        return titled[0]
    if client.is_channel(wanted) or target.startswith("#"):
        return wanted
    raise CliError("bad_argument", f"expected #channel-id, #Title or @handle, got {target!r}")


def _done(channel: Channel) -> Outcome:
    return Outcome(channel_json(channel), channel_text(channel))


async def cmd_create(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        channel = await client.create_channel(
            args.name,
            handle=args.handle,
            public=not args.private,
            description=args.description,
        )
    return _done(channel)


async def cmd_info(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        return _done(await client.channel_info(await _channel_id(client, args.channel)))


async def cmd_find(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        return _done(await client.find_channel(args.handle.lstrip("@")))


async def cmd_subscribe(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        return _done(await client.subscribe(await _channel_id(client, args.channel)))


async def cmd_join(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        return _done(await client.join_channel(args.link))


async def cmd_unsubscribe(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        channel_id = await _channel_id(client, args.channel)
        await client.unsubscribe(channel_id)
    return Outcome({"channel": channel_id, "role": None}, f"unsubscribed from #{channel_id}")


async def cmd_post(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        channel_id = await _channel_id(client, args.channel)
        message = await client.post(channel_id, args.text)
        if message.seq is None:  # no answer: connect and resend it
            await connect_and_sync(client, args.timeout)
            await client.sync_channels()
            found = await client.message(message.id)
            message = found if found is not None else message
    return Outcome(message_json(message), message_line(message))


async def cmd_invite_create(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        channel_id = await _channel_id(client, args.channel)
        token = await client.create_invite(channel_id)
    return Outcome({"channel": channel_id, "token": token}, f"tidings://join/{token}")


async def cmd_invite_revoke(args: argparse.Namespace) -> Outcome:
    token = args.token.rstrip("/").rsplit("/", 1)[-1]
    async with opened(Path(args.profile)) as client:
        channel_id = await _channel_id(client, args.channel)
        await client.revoke_invite(channel_id, token)
    return Outcome({"channel": channel_id, "revoked": token}, "the invite link no longer joins")


async def cmd_admins(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        channel_id = await _channel_id(client, args.channel)
        username = args.user.lstrip("@")
        if args.admins_command == "add":
            channel = await client.add_channel_admin(channel_id, username)
        else:
            channel = await client.remove_channel_admin(channel_id, username)
    return _done(channel)


async def cmd_subscribers(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        page = await client.channel_subscribers(await _channel_id(client, args.channel))
    rows = [{"username": s.username, "role": s.role} for s in page.subscribers]
    text = "\n".join(f"@{safe(s.username)} ({s.role})" for s in page.subscribers)
    return Outcome({"subscribers": rows, "next": page.next}, text or "no subscribers")


async def cmd_channel_sync(args: argparse.Namespace) -> Outcome:
    async with opened(Path(args.profile)) as client:
        await connect_and_sync(client, args.timeout)
        await client.sync_channels()
        convs = [c for c in await client.conversations() if c.kind == "channel"]
    return Outcome({"channels": [c.id for c in convs]}, f"{len(convs)} channels up to date")


def add_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
    waits: argparse.ArgumentParser,
) -> None:
    """``tidings channel create|info|find|subscribe|join|unsubscribe|post|invite|admins|
    subscribers|sync``."""
    channel = sub.add_parser("channel", help="broadcast channels").add_subparsers(
        dest="channel_command", required=True, parser_class=Parser
    )
    parents = [common, profile]
    p = channel.add_parser("create", parents=parents, help="a new channel you own")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--handle", default=None, help="public handle (3-32 of a-z 0-9 _)")
    p.add_argument("--private", action="store_true", help="joined by invite links only")
    p.add_argument("--description", default="")
    p.set_defaults(handler=cmd_create)
    p = channel.add_parser("info", parents=parents, help="admins and subscriber count")
    p.add_argument("channel", metavar="#CHANNEL")
    p.set_defaults(handler=cmd_info)
    p = channel.add_parser("find", parents=parents, help="a public channel by handle")
    p.add_argument("handle", metavar="@HANDLE")
    p.set_defaults(handler=cmd_find)
    p = channel.add_parser("subscribe", parents=parents, help="subscribe to a public channel")
    p.add_argument("channel", metavar="#CHANNEL|@HANDLE")
    p.set_defaults(handler=cmd_subscribe)
    p = channel.add_parser("join", parents=parents, help="join by @handle or invite link")
    p.add_argument("link", metavar="@HANDLE|LINK")
    p.set_defaults(handler=cmd_join)
    p = channel.add_parser("unsubscribe", parents=parents, help="stop reading a channel")
    p.add_argument("channel", metavar="#CHANNEL")
    p.set_defaults(handler=cmd_unsubscribe)
    p = channel.add_parser("post", parents=[*parents, waits], help="post (admins)")
    p.add_argument("channel", metavar="#CHANNEL")
    p.add_argument("text")
    p.set_defaults(handler=cmd_post)
    invite = channel.add_parser("invite", help="invite links").add_subparsers(
        dest="invite_command", required=True, parser_class=Parser
    )
    p = invite.add_parser("create", parents=parents, help="a new invite link (admins)")
    p.add_argument("channel", metavar="#CHANNEL")
    p.set_defaults(handler=cmd_invite_create)
    p = invite.add_parser("revoke", parents=parents, help="the link no longer joins")
    p.add_argument("channel", metavar="#CHANNEL")
    p.add_argument("token", metavar="LINK")
    p.set_defaults(handler=cmd_invite_revoke)
    admins = channel.add_parser("admins", help="who may post").add_subparsers(
        dest="admins_command", required=True, parser_class=Parser
    )
    for verb in ("add", "remove"):
        p = admins.add_parser(verb, parents=parents, help=f"{verb} an admin (the owner)")
        p.add_argument("channel", metavar="#CHANNEL")
        p.add_argument("user", metavar="@user")
        p.set_defaults(handler=cmd_admins)
    p = channel.add_parser("subscribers", parents=parents, help="the subscriber list (admins)")
    p.add_argument("channel", metavar="#CHANNEL")
    p.set_defaults(handler=cmd_subscribers)
    p = channel.add_parser("sync", parents=[*parents, waits], help="catch up with channels")
    p.set_defaults(handler=cmd_channel_sync)
