"""``python -m tidings.server [--host H] [--port P] [--data DIR] [--config FILE]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tidings.server.config import ConfigError, ServerConfig
from tidings.server.main import serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tidings.server",
        description="Run the Tidings server.",
        epilog="Settings also come from TIDINGS_* environment variables (TIDINGS_HOST, "
        "TIDINGS_PORT, TIDINGS_DATA, TIDINGS_MEMBER_CAP, TIDINGS_REGISTRATION_OPEN, "
        "TIDINGS_IDLE_TIMEOUT, TIDINGS_SEND_QUEUE_FRAMES, TIDINGS_PENDING_TTL_DAYS, "
        "TIDINGS_REQUIRE_E2EE, TIDINGS_KEY_CLAIMS_PER_MINUTE, TIDINGS_PROVISIONING_PER_MINUTE, "
        "TIDINGS_PROVISIONING_TTL_SECONDS, TIDINGS_MAX_DEVICES_PER_ACCOUNT, "
        "TIDINGS_LOG_LEVEL) and the TOML file; the command line wins, then the environment, "
        "then the file.",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8080)")
    parser.add_argument("--data", type=Path, help="data directory (default ./tidings-data)")
    parser.add_argument("--config", type=Path, help="TOML file (default <data>/tidings.toml)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    try:
        config = ServerConfig.load(
            {
                "host": args.host,
                "port": args.port,
                "data_dir": args.data,
                "log_level": args.log_level,
            },
            toml_path=args.config,
        )
    except ConfigError as exc:
        print(f"tidings server: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
