"""Peer: Synapse (``matrix-synapse`` from PyPI) on SQLite, driven through the client API.

Installs Synapse into ``bench/.peers/synapse-venv`` once, generates its config once under
``bench/.peers/synapse`` and overrides it for benchmarks (client listener on 127.0.0.1 only,
SQLite, open registration without verification, ``rc_*`` limits raised, presence and URL
previews off, no federation key servers). Each run starts from an empty database, registers
the users, makes one direct room per pair, then runs the 1:1 workload: the sender
``PUT …/send/m.room.message/{txn}`` with ``window`` in flight, the receiver long-polls
``/sync``; a message leaves the window when the PUT answered (the event is stored) AND the
receiver's sync returned it. Synapse is stopped at the end.

    python -m bench.peers.synapse [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import CACHE_DIR, LOOPBACK, Histogram, ServerProcess, cpu_seconds, free_port, ms

HOME = CACHE_DIR / "synapse"
VENV = CACHE_DIR / "synapse-venv"
SERVER_NAME = "localhost"
PAIRS = 8
WINDOW = 2
PASSWORD = "bench-password-1"

Json = dict[str, Any]


def install() -> str:
    """Synapse in its own venv (once); its version."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    probe = subprocess.run(
        [str(python), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "matrix-synapse"],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"cannot install matrix-synapse: {proc.stderr[-800:]}")
        probe = subprocess.run(
            [str(python), "-c", "import synapse; print(synapse.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
    return probe.stdout.strip().split()[0]


def configure(port: int) -> list[Path]:
    """The generated config (made once) plus this run's overrides; fresh database."""
    HOME.mkdir(parents=True, exist_ok=True)
    generated = HOME / "homeserver.yaml"
    if not generated.exists():
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                str(generated),
                "--generate-config",
                "--report-stats=no",
            ],
            capture_output=True,
            check=True,
            timeout=300,
            cwd=HOME,
        )
    database = HOME / "homeserver.db"
    for path in HOME.glob("homeserver.db*"):
        path.unlink()
    unlimited = {"per_second": 100000, "burst_count": 100000}
    overrides = {
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(database)}},
        "log_config": str(HOME / "log.yaml"),
        "media_store_path": str(HOME / "media_store"),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "rc_message": unlimited,
        "rc_registration": unlimited,
        "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
        "rc_joins": {"local": unlimited, "remote": unlimited},
        "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
        "rc_room_creation": unlimited,
    }
    bench_yaml = HOME / "bench.yaml"
    bench_yaml.write_text(json.dumps(overrides, indent=2))  # JSON is YAML
    (HOME / "log.yaml").write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {
                    "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "formatter": "plain",
                        "filename": str(HOME / "homeserver.log"),
                    }
                },
                "root": {"level": "WARNING", "handlers": ["file"]},
                "disable_existing_loggers": False,
            }
        )
    )
    return [generated, bench_yaml]


class _Meter:
    def __init__(self) -> None:
        self.measure_from = float("inf")
        self.stop_at = float("inf")
        self.completed = 0
        self.latency = Histogram()


class _Pair:
    """A sender and a receiver in one room."""

    def __init__(
        self, http: httpx.AsyncClient, room: str, sender: str, receiver: str, meter: _Meter
    ) -> None:
        self.http = http
        self.room = room
        self.sender = {"Authorization": f"Bearer {sender}"}
        self.receiver = {"Authorization": f"Bearer {receiver}"}
        self.meter = meter
        self.window = asyncio.Semaphore(WINDOW)
        #: key → [sent_at, acked, delivered_at]
        self.flights: dict[str, list[float]] = {}
        self.since = ""

    def _done(self, key: str) -> None:
        sent_at, acked, delivered = self.flights[key]
        if not acked or not delivered:
            return
        del self.flights[key]
        self.window.release()
        now = time.monotonic()
        if self.meter.measure_from <= now < self.meter.stop_at:
            self.meter.completed += 1
            self.meter.latency.record(delivered - sent_at)

    async def initial_sync(self) -> None:
        response = await self.http.get("/_matrix/client/v3/sync", headers=self.receiver)
        response.raise_for_status()
        self.since = response.json()["next_batch"]

    async def send_loop(self) -> None:
        async def one(key: str) -> None:
            response = await self.http.put(
                f"/_matrix/client/v3/rooms/{self.room}/send/m.room.message/{key}",
                json={"msgtype": "m.text", "body": f"{key} " + "x" * 64},
                headers=self.sender,
            )
            response.raise_for_status()
            self.flights[key][1] = 1.0
            self._done(key)

        tasks: set[asyncio.Task[None]] = set()
        while True:
            await self.window.acquire()
            now = time.monotonic()
            if now >= self.meter.stop_at:
                break
            key = uuid.uuid4().hex
            self.flights[key] = [now, 0.0, 0.0]
            task = asyncio.ensure_future(one(key))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def sync_loop(self) -> None:
        while True:
            response = await self.http.get(
                "/_matrix/client/v3/sync",
                params={"since": self.since, "timeout": "30000"},
                headers=self.receiver,
            )
            response.raise_for_status()
            body = response.json()
            now = time.monotonic()
            self.since = body["next_batch"]
            room = body.get("rooms", {}).get("join", {}).get(self.room, {})
            for event in room.get("timeline", {}).get("events", []):
                key = str(event.get("content", {}).get("body", "")).split(" ", 1)[0]
                flight = self.flights.get(key)
                if flight is not None and not flight[2]:
                    flight[2] = now
                    self._done(key)


async def _register(http: httpx.AsyncClient, user: str) -> str:
    response = await http.post(
        "/_matrix/client/v3/register",
        json={"username": user, "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    if response.status_code != 200:
        raise RuntimeError(f"register {user}: {response.status_code} {response.text[:300]}")
    return str(response.json()["access_token"])


async def _drive(url: str, pid: int, quick: bool) -> Json:
    meter = _Meter()
    limits = httpx.Limits(max_connections=PAIRS * (WINDOW + 2))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        pairs: list[_Pair] = []
        for i in range(PAIRS):
            sender = await _register(http, f"s{i:03d}")
            receiver = await _register(http, f"r{i:03d}")
            response = await http.post(
                "/_matrix/client/v3/createRoom",
                json={"preset": "trusted_private_chat", "is_direct": True},
                headers={"Authorization": f"Bearer {sender}"},
            )
            response.raise_for_status()
            room = response.json()["room_id"]
            response = await http.post(
                f"/_matrix/client/v3/rooms/{room}/invite",
                json={"user_id": f"@r{i:03d}:{SERVER_NAME}"},
                headers={"Authorization": f"Bearer {sender}"},
            )
            response.raise_for_status()
            response = await http.post(
                f"/_matrix/client/v3/join/{room}",
                json={},
                headers={"Authorization": f"Bearer {receiver}"},
            )
            response.raise_for_status()
            pair = _Pair(http, room, sender, receiver, meter)
            await pair.initial_sync()
            pairs.append(pair)
        syncs = [asyncio.ensure_future(p.sync_loop()) for p in pairs]
        warmup, duration = 1.0, (5.0 if quick else 10.0)
        start = time.monotonic()
        meter.measure_from = start + warmup
        meter.stop_at = meter.measure_from + duration
        senders = [asyncio.ensure_future(p.send_loop()) for p in pairs]
        await asyncio.sleep(warmup)
        cpu0 = cpu_seconds(pid)
        cpu_load0 = time.process_time()
        await asyncio.sleep(duration)
        server_cpu = 100 * (cpu_seconds(pid) - cpu0) / duration
        load_cpu = 100 * (time.process_time() - cpu_load0) / duration
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*senders)
        finally:
            for task in syncs + senders:
                task.cancel()
            await asyncio.gather(*syncs, *senders, return_exceptions=True)
    return {
        "msgs_per_s": round(meter.completed / duration, 1),
        "p50_ms": ms(meter.latency.percentile(50)),
        "p99_ms": ms(meter.latency.percentile(99)),
        "completed": meter.completed,
        "pairs": PAIRS,
        "window": WINDOW,
        "processes": 1,
        "loadgen_cpu_pct": [round(load_cpu, 1)],
        "server_cpu_pct": round(server_cpu, 1),
        "errors": [],
    }


def measure(quick: bool, work_dir: Path) -> Json:
    version = install()
    port = free_port()
    configs = configure(port)
    argv = [str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver"]
    for config in configs:
        argv += ["--config-path", str(config)]
    env = dict(os.environ)
    server = ServerProcess("synapse", argv, work_dir / "synapse.out", env=env, cwd=HOME)
    with server:
        server.wait_http(f"http://{LOOPBACK}:{port}/health", timeout=120)
        data = asyncio.run(_drive(f"http://{LOOPBACK}:{port}", server.pid, quick))
        server.check_alive()
    data["version"] = version
    data["note"] = (
        f"Synapse {version} on SQLite, {PAIRS} pairs x {WINDOW} in flight (~{PAIRS * WINDOW} "
        "concurrent sends; more only queues inside Synapse), client API PUT send + long-poll "
        "/sync, one load process (httpx)."
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.synapse", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="bench-synapse-"))
    print(json.dumps(measure(args.quick, work_dir), indent=2))


if __name__ == "__main__":
    main()
