"""The ``tidings`` command: the full command line where the client's libraries are installed,
else (a server-only install, ``pip install 'tidings[server]'``) ``serve`` and ``admin`` alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from tidings.cli.base import (
    EXIT_USAGE,
    CliError,
    Outcome,
    Parser,
    add_serve_parser,
    emit_error,
    version,
)

#: the commands a server-only install has
SERVER_COMMANDS = ("serve", "admin")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from tidings.cli.main import main as full
    except ModuleNotFoundError as exc:
        if (exc.name or "tidings").partition(".")[0] == "tidings":
            raise  # our own module missing: a broken install, not a server-only one
        return server_main(argv, missing=exc.name or "?")
    return full(argv)


def build_server_parser() -> argparse.ArgumentParser:
    from tidings.cli.admin import add_admin_parser

    common = Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = Parser(prog="tidings", description="Tidings messenger: server (server-only install)")
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"tidings {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_serve_parser(sub, common)
    add_admin_parser(sub, common, Parser)
    return parser


def server_main(argv: Sequence[str] | None = None, *, missing: str = "?") -> int:
    """``tidings serve`` and ``tidings admin`` without the client's libraries; any other
    command says what to install."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    first = next((a for a in args_list if not a.startswith("-")), None)
    if first is not None and first not in SERVER_COMMANDS:
        return emit_error(
            CliError(
                "client_missing",
                f"`tidings {first}` needs the client: pip install 'tidings[client]'"
                f" (this install has the server only; {missing} is missing)",
                EXIT_USAGE,
            ),
            as_json,
        )
    try:
        args = build_server_parser().parse_args(args_list)
        as_json = bool(getattr(args, "json", False))
        handler: Callable[[argparse.Namespace], Outcome] = args.sync_handler
        outcome = handler(args)
    except CliError as err:
        return emit_error(err, as_json)
    except KeyboardInterrupt:
        return emit_error(CliError("interrupted", "interrupted", 130), as_json)
    except OSError as err:
        return emit_error(CliError("os_error", str(err)), as_json)
    for warning in outcome.warnings:
        print(
            json.dumps({"warning": warning}) if as_json else f"warning: {warning}", file=sys.stderr
        )
    print(json.dumps(outcome.data, ensure_ascii=False) if as_json else outcome.text)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
