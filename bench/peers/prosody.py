"""Peer: Prosody (Debian package) with its message archive (mod_mam), driven by slixmpp.

Installs what is missing (``apt-get install prosody lua-dbi-sqlite3``; slixmpp into
``bench/.peers/xmpp-venv``), writes a loopback-only configuration under
``bench/.peers/prosody`` (c2s on 127.0.0.1 only, no s2s, no HTTP, TLS off, plaintext SCRAM
allowed; the archive in Prosody's default file storage), creates the users, runs Prosody in the
foreground as a child process and runs the 1:1 workload of :mod:`bench.loadgen` over XMPP
(:mod:`bench.peers.xmpp_load`). Prosody is stopped at the end.

    python -m bench.peers.prosody [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import (
    BENCH_DIR,
    CACHE_DIR,
    LOOPBACK,
    PairSpec,
    ServerProcess,
    free_port,
    run_load,
)

HOME = CACHE_DIR / "prosody"
VENV = CACHE_DIR / "xmpp-venv"
HOST = "localhost"
PASSWORD = "bench-password"
#: Prosody's default archive storage (files); BENCH_PROSODY_ARCHIVE=sql stores it in SQLite
#: (one transaction and fsync per stanza: ~4x slower here)
ARCHIVE = os.environ.get("BENCH_PROSODY_ARCHIVE", "internal")
PAIRS = 32
WINDOW = 16

Json = dict[str, Any]

CONFIG = """-- written by bench/peers/prosody.py: loopback only, for benchmarks
run_as_root = true
pidfile = "{home}/prosody.pid"
data_path = "{home}/data"
log = {{ warn = "{home}/prosody.log" }}
network_backend = "epoll"
interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "mam"; "ping"; }}
modules_disabled = {{ "s2s"; "tls"; }}
storage = {{ archive = "{archive}"; }}
sql = {{ driver = "SQLite3"; database = "archive.sqlite"; }}
default_archive_policy = true
archive_expires_after = "1w"
VirtualHost "{host}"
"""


def _run(argv: list[str], timeout: float = 900) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}… failed: {proc.stderr[-800:]}")


def install() -> str:
    """Prosody and slixmpp, installed once; Prosody's version."""
    if shutil.which("prosody") is None or not Path("/usr/lib/x86_64-linux-gnu/lua").exists():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, env=env)
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "prosody", "lua-dbi-sqlite3"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"cannot install prosody: {proc.stderr[-800:]}")
    python = VENV / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    probe = subprocess.run(
        [str(python), "-c", "import slixmpp, msgspec, httpx, websockets"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        _run(
            [str(python), "-m", "pip", "install", "-q", "slixmpp", "msgspec", "httpx", "websockets"]
        )
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "prosody"], capture_output=True, text=True
    ).stdout
    return version.strip() or "unknown"


def configure(port: int, users: list[str]) -> Path:
    """Fresh config and data for this run (the archive starts empty); the config path."""
    shutil.rmtree(HOME / "data", ignore_errors=True)
    accounts = HOME / "data" / HOST / "accounts"
    accounts.mkdir(parents=True)
    for user in users:
        # internal_plain's store: one Lua table per account
        (accounts / f"{user}.dat").write_text(f'return {{ ["password"] = "{PASSWORD}"; }};\n')
    config = HOME / "prosody.cfg.lua"
    config.write_text(CONFIG.format(home=HOME, port=port, host=HOST, archive=ARCHIVE))
    return config


def measure(quick: bool, work_dir: Path) -> Json:
    version = install()
    HOME.mkdir(parents=True, exist_ok=True)
    port = free_port()
    names = [f"u{i:04d}{side}" for i in range(PAIRS) for side in "sr"]
    config = configure(port, names)
    pairs = [
        PairSpec(
            conv=f"{names[2 * i + 1]}@{HOST}",
            sender_token=f"{names[2 * i]}@{HOST}",
            receiver_token=f"{names[2 * i + 1]}@{HOST}",
        )
        for i in range(PAIRS)
    ]
    env = dict(os.environ, PYTHONPATH=f"{BENCH_DIR.parent}:{BENCH_DIR.parent / 'src'}")
    worker = [str(VENV / "bin" / "python"), "-m", "bench.peers.xmpp_load"]
    argv = ["prosody", "-F", "--config", str(config)]
    server = ServerProcess("prosody", argv, work_dir / "prosody.out", cwd=HOME)
    reports = []
    with server:
        server.wait_tcp(port)
        for processes in (1,) if quick else (1, 2):
            reports.append(
                run_load(
                    "xmpp",
                    f"{LOOPBACK}:{port}",
                    pairs,
                    WINDOW,
                    0.5,
                    2.0 if quick else 5.0,
                    processes,
                    server.pid,
                    worker_argv=worker,
                    worker_env=env,
                )
            )
            server.check_alive()
    best = max(reports, key=lambda r: r.msgs_per_s)
    data: Json = best.as_dict()
    stored = sum(f.stat().st_size for f in (HOME / "data").rglob("*") if f.is_file())
    data["version"] = version
    data["note"] = (
        f"Prosody {version}, mod_mam archiving every message for sender and receiver "
        f"(storage {ARCHIVE!r}; data dir {stored / 2**20:.1f} MiB after the run), slixmpp "
        f"clients, {PAIRS} pairs x {WINDOW} in flight; XMPP has no server ack per message, so "
        "a message leaves the window on delivery. Best of 1 and 2 load processes: "
        + ", ".join(f"{r.processes} -> {r.msgs_per_s:,.0f}/s" for r in reports)
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.prosody", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="bench-prosody-"))
    print(json.dumps(measure(args.quick, work_dir), indent=2))


if __name__ == "__main__":
    main()
