"""``tidings admin``: the operator's commands, for a server running on this machine.

Every command but ``backup`` talks to the running server through its admin socket
(``<data_dir>/admin.sock``, setting ``admin_socket``): the server is the only process that
writes its database, and disabling a user or removing a device closes the live connections at
once. Run them as the server's user (or root): the socket is 0600 in a 0700 directory.
``backup`` reads the database itself with SQLite's online backup API, which is safe while the
server writes (WAL: a reader never blocks the writer), and copies the data directory's other
files (keys, the config, local media) beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from tidings.cli.base import EXIT_USAGE, CliError, Outcome

#: ``7d``, ``12h``, ``30m``, ``45s``; ``never``.
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Files of the data directory a backup does not copy (the database is copied by SQLite).
_SKIP = re.compile(r"^(tidings\.sqlite3(-wal|-shm|-journal)?|admin\.sock)$")


def parse_duration(text: str) -> float | None:
    if text == "never":
        return None
    match = _DURATION.match(text.strip())
    if match is None:
        raise CliError("bad_argument", f"not a duration: {text!r} (e.g. 7d, 12h, 30m, never)")
    return int(match.group(1)) * _UNIT[match.group(2)]


def _config(args: argparse.Namespace) -> Any:
    from tidings.server.config import ConfigError, ServerConfig

    overrides = {"data_dir": Path(args.data) if args.data else None}
    try:
        return ServerConfig.load(overrides, toml_path=Path(args.config) if args.config else None)
    except ConfigError as exc:
        raise CliError("bad_config", str(exc), EXIT_USAGE) from exc


def _call(args: argparse.Namespace, method: str, path: str, body: object = None) -> Any:
    config = _config(args)
    if not config.admin_socket:
        raise CliError("no_admin_socket", "admin_socket is empty: the admin API is off")
    socket = config.data_dir / config.admin_socket
    if not socket.exists():
        raise CliError(
            "not_running",
            f"no admin socket at {socket}: is the server running with this data directory"
            " (--data), and are you its user?",
        )
    transport = httpx.HTTPTransport(uds=str(socket))
    try:
        with httpx.Client(transport=transport, base_url="http://admin", timeout=30) as http:
            answer = http.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise CliError("not_running", f"cannot reach the admin socket {socket}: {exc}") from exc
    if answer.status_code >= 400:
        try:
            error = answer.json()
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = f"http_{answer.status_code}", answer.text
        raise CliError(code, message)
    return answer.json() if answer.content else None


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def _user_line(row: dict[str, Any]) -> str:
    return (
        f"{row['username']:<24} {row['status']:<9} {row['devices']:>3} devices"
        f"  since {_when(row['created_at'])}  {row['account_id']}"
    )


def cmd_user_list(args: argparse.Namespace) -> Outcome:
    rows = _call(args, "GET", "/users")
    return Outcome({"users": rows}, "\n".join(map(_user_line, rows)) or "no users")


def cmd_user_add(args: argparse.Namespace) -> Outcome:
    """An invite for one sign-up under this name: the user creates the account (and its keys)
    on their own device; the server never holds a key of it."""
    body = {"uses": 1, "expires_in": parse_duration(args.expires), "username": args.username}
    answer = _call(args, "POST", "/invites", body)
    token = answer["token"]
    text = (
        f"invite for @{args.username} (expires {_when(answer['invite']['expires_at'])}):\n"
        f"  tidings account create --server https://YOUR-SERVER --invite {token}"
        f" --profile PROFILE {args.username}"
    )
    return Outcome({"invite": answer["invite"], "token": token}, text)


def _user_action(action: str) -> Any:
    def run(args: argparse.Namespace) -> Outcome:
        if action == "remove":
            row = _call(args, "DELETE", f"/users/{args.username}")
        else:
            row = _call(args, "POST", f"/users/{args.username}/{action}")
        return Outcome(row, _user_line(row))

    return run


def cmd_invite_create(args: argparse.Namespace) -> Outcome:
    body = {"uses": args.uses, "expires_in": parse_duration(args.expires), "note": args.note}
    answer = _call(args, "POST", "/invites", body)
    invite = answer["invite"]
    text = (
        f"invite {invite['id']}: {invite['max_uses']} uses, expires {_when(invite['expires_at'])}"
        f"\ntoken (shown once): {answer['token']}"
    )
    return Outcome(answer, text)


def cmd_invite_list(args: argparse.Namespace) -> Outcome:
    rows = _call(args, "GET", "/invites")
    lines = []
    for row in rows:
        state = "revoked" if row["revoked_at"] else f"{row['uses']}/{row['max_uses']} used"
        only = f" for @{row['username']}" if row["username"] else ""
        lines.append(
            f"{row['id']}  {state:<12} expires {_when(row['expires_at'])}{only}  {row['note']}"
        )
    return Outcome({"invites": rows}, "\n".join(lines) or "no invites")


def cmd_invite_revoke(args: argparse.Namespace) -> Outcome:
    _call(args, "DELETE", f"/invites/{args.invite_id}")
    return Outcome({"revoked": args.invite_id}, f"invite {args.invite_id} revoked")


def cmd_device_list(args: argparse.Namespace) -> Outcome:
    rows = _call(args, "GET", f"/users/{args.username}/devices")
    lines = [f"{r['device_id']:>3}  {r['name']:<24} since {_when(r['created_at'])}" for r in rows]
    return Outcome({"devices": rows}, "\n".join(lines) or "no devices")


def cmd_device_remove(args: argparse.Namespace) -> Outcome:
    _call(args, "DELETE", f"/users/{args.username}/devices/{args.device_id}")
    text = f"removed device {args.device_id} of @{args.username}"
    return Outcome({"username": args.username, "device_id": args.device_id}, text)


def cmd_stats(args: argparse.Namespace) -> Outcome:
    stats = _call(args, "GET", "/stats")
    return Outcome(stats, "\n".join(f"{k:<20} {v}" for k, v in stats.items()))


def backup(database: Path, dest: Path) -> str:
    """Copy ``database`` to ``dest`` with SQLite's online backup API (one read transaction:
    a consistent snapshot while the server keeps writing); returns the copy's integrity check.
    """
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)  # pages=-1: everything in one step
            check = str(target.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            target.close()
    finally:
        source.close()
    with open(partial, "rb") as file:
        os.fsync(file.fileno())
    os.chmod(partial, 0o600)
    partial.replace(dest)
    return check


def cmd_backup(args: argparse.Namespace) -> Outcome:
    config = _config(args)
    database = config.database_path
    if not database.exists():
        raise CliError("no_database", f"no database at {database}")
    dest = Path(args.dest)
    if dest.exists() and any(dest.iterdir()):
        raise CliError("dest_exists", f"{dest} exists and is not empty: name a new directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    check = backup(database, dest / database.name)
    if check != "ok":
        raise CliError("backup_corrupt", f"the copy fails SQLite's integrity check: {check}")
    copied = [database.name]
    for item in sorted(config.data_dir.iterdir()):
        if _SKIP.match(item.name):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
        copied.append(item.name)
    text = f"backup of {config.data_dir} in {dest}: {', '.join(copied)} (integrity ok)"
    return Outcome({"dest": str(dest), "files": copied, "integrity": check}, text)


def cmd_migrate_store(args: argparse.Namespace) -> Outcome:
    """Copy a SQLite store into an empty PostgreSQL database (the server stopped)."""
    import asyncio

    from tidings.server.store.postgres.transfer import TransferError, copy_sqlite
    from tidings.server.store.sqlite import SqliteStore

    source, target = str(args.source), str(args.target)
    if not source.startswith("sqlite:") or not target.startswith(("postgresql://", "postgres://")):
        raise CliError("usage", "--from sqlite:PATH --to postgresql://...", EXIT_USAGE)
    path = Path(source.removeprefix("sqlite:")).expanduser()
    if not path.is_file():
        raise CliError("no_database", f"no database at {path}")

    async def run() -> dict[str, int]:
        store = SqliteStore(path)  # opening it brings its schema up to date
        await store.open()
        await store.close()
        return await copy_sqlite(path, target)

    try:
        copied = asyncio.run(run())
    except TransferError as exc:
        raise CliError("migrate_failed", str(exc)) from exc
    lines = [f"{table:<20} {rows}" for table, rows in copied.items()]
    text = "\n".join([f"copied {path} into PostgreSQL (counts verified):", *lines])
    return Outcome({"tables": copied}, text)


def add_admin_parser(sub: Any, common: argparse.ArgumentParser, parser_class: Any) -> None:
    """``tidings admin …``, under the top-level subcommands ``sub``."""
    where = parser_class(add_help=False)
    where.add_argument("--data", default=None, help="the server's data directory")
    where.add_argument("--config", default=None, help="the server's config file")
    parents = [common, where]
    admin = sub.add_parser("admin", help="operate a server on this machine").add_subparsers(
        dest="admin_command", required=True, parser_class=parser_class
    )

    user = admin.add_parser("user", help="accounts").add_subparsers(
        dest="admin_user_command", required=True, parser_class=parser_class
    )
    p = user.add_parser("list", parents=parents, help="every account and its status")
    p.set_defaults(sync_handler=cmd_user_list)
    p = user.add_parser("add", parents=parents, help="a one-use invite for this username")
    p.add_argument("username")
    p.add_argument("--expires", default="7d", help="e.g. 7d, 12h, never (default 7d)")
    p.set_defaults(sync_handler=cmd_user_add)
    for action, text in (
        ("disable", "refuse its devices (connections closed now)"),
        ("enable", "undo disable"),
        ("remove", "drop its devices for good; the name stays reserved"),
    ):
        p = user.add_parser(action, parents=parents, help=text)
        p.add_argument("username")
        p.set_defaults(sync_handler=_user_action(action))

    invite = admin.add_parser("invite", help="registration tokens").add_subparsers(
        dest="admin_invite_command", required=True, parser_class=parser_class
    )
    p = invite.add_parser("create", parents=parents, help="a new invite")
    p.add_argument("--uses", type=int, default=1)
    p.add_argument("--expires", default="7d", help="e.g. 7d, 12h, never (default 7d)")
    p.add_argument("--note", default="", help="who it is for (shown by list)")
    p.set_defaults(sync_handler=cmd_invite_create)
    p = invite.add_parser("list", parents=parents, help="every invite")
    p.set_defaults(sync_handler=cmd_invite_list)
    p = invite.add_parser("revoke", parents=parents, help="revoke an invite")
    p.add_argument("invite_id", metavar="INVITE-ID")
    p.set_defaults(sync_handler=cmd_invite_revoke)

    p = admin.add_parser(
        "migrate-store", parents=[common], help="copy a SQLite store into an empty PostgreSQL"
    )
    p.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    p.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    p.set_defaults(sync_handler=cmd_migrate_store)

    device = admin.add_parser("device", help="an account's devices").add_subparsers(
        dest="admin_device_command", required=True, parser_class=parser_class
    )
    p = device.add_parser("list", parents=parents, help="the devices of an account")
    p.add_argument("username")
    p.set_defaults(sync_handler=cmd_device_list)
    p = device.add_parser("remove", parents=parents, help="remove one device (closes it: 4401)")
    p.add_argument("username")
    p.add_argument("device_id", type=int, metavar="DEVICE")
    p.set_defaults(sync_handler=cmd_device_remove)

    p = admin.add_parser("stats", parents=parents, help="counts and connections")
    p.set_defaults(sync_handler=cmd_stats)
    p = admin.add_parser("backup", parents=parents, help="an online backup into DEST")
    p.add_argument("dest", metavar="DEST", help="a new (or empty) directory")
    p.set_defaults(sync_handler=cmd_backup)
