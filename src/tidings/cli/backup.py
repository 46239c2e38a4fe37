"""`tidings backup enable|status|now|export|import|change-passphrase|reset` and
`tidings account recover` (client/backup; docs/e2ee.md "The history vault").

Passphrases come from a prompt (getpass, twice when a new one is chosen), or for scripts and
tests from ``--passphrase-file FILE`` (``-`` reads one line from stdin). Progress goes to
stderr so that ``--json`` output stays clean.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from tidings.cli.common import CliError, Outcome, Parser, opened
from tidings.client.backup.recovery import recover_account


def _progress(what: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)

    return show


def _first_line(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").splitlines()[0]


def _passphrase(args: argparse.Namespace, prompt: str, *, confirm: bool = False) -> str:
    source = getattr(args, "passphrase_file", None)
    if source == "-":
        return sys.stdin.readline().rstrip("\n")
    if source:
        return _first_line(source)
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != first:
        raise CliError("bad_argument", "the passphrases differ")
    return first


def _profile(args: argparse.Namespace) -> Path:
    if not args.profile:
        raise CliError("bad_argument", "--profile is required")
    return Path(args.profile)


async def cmd_backup_enable(args: argparse.Namespace) -> Outcome:
    passphrase = _passphrase(args, "New backup passphrase: ", confirm=True)
    async with opened(_profile(args)) as client:
        await client.enable_backup(passphrase)
        pages = await client.backup_now(_progress("upload"))
    return Outcome({"enabled": True, "pages": pages}, f"backup enabled; {pages} pages uploaded")


async def cmd_backup_reset(args: argparse.Namespace) -> Outcome:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("bad_argument", "reset deletes the backup on the server: add --yes")
        print(
            "This deletes the account's backup on the server; history kept only there is"
            " lost, and no device can recover the account from it.",
            file=sys.stderr,
        )
        answer = await asyncio.to_thread(input, 'Type "reset" to go on: ')
        if answer.strip().lower() != "reset":
            raise CliError("cancelled", "nothing was deleted")
    async with opened(_profile(args)) as client:
        await client.reset_backup()
    return Outcome({"reset": True}, "backup deleted; tidings backup enable starts a new one")


async def cmd_backup_now(args: argparse.Namespace) -> Outcome:
    async with opened(_profile(args)) as client:
        pages = await client.backup_now(_progress("upload"))
    return Outcome({"pages": pages}, f"{pages} pages uploaded")


async def cmd_backup_status(args: argparse.Namespace) -> Outcome:
    async with opened(_profile(args)) as client:
        s = await client.backup_status()
    data = {
        "enabled": s.enabled, "pending": s.pending, "pages": s.pages, "bytes": s.bytes,
        "quota": s.quota,
    }  # fmt: skip
    if not s.enabled:
        return Outcome(data, "backup is off (tidings backup enable)")
    return Outcome(data, f"backup on: {s.pages} pages, {s.bytes} bytes; {s.pending} pending")


async def cmd_backup_export(args: argparse.Namespace) -> Outcome:
    async with opened(_profile(args)) as client:
        pages = await client.export_backup(Path(args.file), _progress("export"))
    return Outcome({"file": args.file, "pages": pages}, f"{pages} pages written to {args.file}")


async def cmd_backup_import(args: argparse.Namespace) -> Outcome:
    passphrase = _passphrase(args, "Passphrase of the export: ")
    async with opened(_profile(args)) as client:
        added = await client.import_backup(Path(args.file), passphrase)
    return Outcome({"added": added}, f"{added} messages imported")


async def cmd_backup_change(args: argparse.Namespace) -> Outcome:
    old = _passphrase(args, "Current passphrase: ")
    if getattr(args, "new_passphrase_file", None):
        new = _first_line(args.new_passphrase_file)
    else:
        new = getpass.getpass("New passphrase: ")
        if getpass.getpass("Again: ") != new:
            raise CliError("bad_argument", "the passphrases differ")
    async with opened(_profile(args)) as client:
        await client.change_passphrase(old, new)
    return Outcome({"changed": True}, "passphrase changed")


async def cmd_account_recover(args: argparse.Namespace) -> Outcome:
    passphrase = _passphrase(args, f"Backup passphrase of @{args.username}: ")

    def progress(step: str, done: int, total: int) -> None:
        print(f"{step}: {done}/{total}", file=sys.stderr, flush=True)

    client = await recover_account(
        args.server, _profile(args), args.username.lstrip("@"), passphrase, on_progress=progress
    )
    try:
        account = client.account
    finally:
        await client.close()
    data = {
        "account_id": account.account_id, "username": account.username,
        "device_id": account.device_id, "profile": args.profile,
    }  # fmt: skip
    return Outcome(data, f"recovered @{account.username} as device {account.device_id}")


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    profile: argparse.ArgumentParser,
) -> None:
    secret = Parser(add_help=False)
    secret.add_argument(
        "--passphrase-file", default=None, help="read the passphrase from FILE (- for stdin)"
    )
    backup = sub.add_parser("backup", help="encrypted history backup").add_subparsers(
        dest="backup_command", required=True, parser_class=Parser
    )
    p = backup.add_parser("enable", parents=[common, profile, secret], help="turn backup on")
    p.set_defaults(handler=cmd_backup_enable)
    p = backup.add_parser("status", parents=[common, profile], help="backup status")
    p.set_defaults(handler=cmd_backup_status)
    p = backup.add_parser("now", parents=[common, profile], help="upload what changed now")
    p.set_defaults(handler=cmd_backup_now)
    p = backup.add_parser("export", parents=[common, profile], help="write the vault to a file")
    p.add_argument("file")
    p.set_defaults(handler=cmd_backup_export)
    p = backup.add_parser("import", parents=[common, profile, secret], help="import an export")
    p.add_argument("file")
    p.set_defaults(handler=cmd_backup_import)
    p = backup.add_parser(
        "change-passphrase", parents=[common, profile, secret], help="change the passphrase"
    )
    p.add_argument("--new-passphrase-file", default=None)
    p.set_defaults(handler=cmd_backup_change)
    p = backup.add_parser(
        "reset", parents=[common, profile], help="delete the backup (then enable a new one)"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=cmd_backup_reset)

    account_parser = sub.choices["account"]
    account = next(a for a in account_parser._actions if isinstance(a, argparse._SubParsersAction))
    p = account.add_parser(
        "recover", parents=[common, profile, secret], help="recover an account from its backup"
    )
    p.add_argument("--server", required=True, help="server URL")
    p.add_argument("username", metavar="USERNAME")
    p.set_defaults(handler=cmd_account_recover)
