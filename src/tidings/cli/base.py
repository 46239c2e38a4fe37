"""What every ``tidings`` command shares, without the client's libraries: exit codes, the
error and result types, the parser that reports usage errors as errors, and ``tidings serve``.

A server-only install (``pip install 'tidings[server]'``) has no client libraries; its
``tidings`` command (:mod:`tidings.command`) builds on this module alone.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

#: Exit codes: 0 success, 1 a typed error, 2 bad usage, 3 a bounded wait ran out.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


class CliError(Exception):
    """A failure the CLI reports as ``{code, message}`` with exit code ``exit_code``."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


@dataclass
class Outcome:
    """What a command produced: ``data`` for ``--json``, ``text`` for people."""

    data: Any
    text: str
    exit_code: int = EXIT_OK
    warnings: list[str] = field(default_factory=list)


class Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so usage errors can be reported as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise CliError("usage", f"{self.prog}: {message}", EXIT_USAGE)


def version() -> str:
    try:
        return importlib.metadata.version("tidings")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def emit_error(err: CliError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"code": err.code, "message": err.message}), file=sys.stderr)
    else:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
    return err.exit_code


# --------------------------------------------------------------------------- tidings serve


def cmd_serve(args: argparse.Namespace) -> Outcome:
    from tidings.server.config import ConfigError, ServerConfig
    from tidings.server.main import serve

    overrides: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "data_dir": Path(args.data) if args.data else None,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }
    try:
        config = ServerConfig.load(overrides, toml_path=Path(args.config) if args.config else None)
    except ConfigError as exc:
        raise CliError("bad_config", str(exc), EXIT_USAGE) from exc
    serve(config)
    return Outcome({"stopped": True}, "server stopped")


def add_serve_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``tidings serve``, under the top-level subcommands ``sub``."""
    p = sub.add_parser("serve", parents=[common], help="run a server")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--data", default=None, help="data directory")
    p.add_argument("--config", default=None, help="config file")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info); no level logs a token, key or payload",
    )
    p.add_argument("--log-format", default=None, choices=["text", "json"])
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain (HTTPS; SIGHUP reloads)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.set_defaults(sync_handler=cmd_serve)
