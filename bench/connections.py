"""Idle connections: how many WebSockets one Tidings server holds, and what each costs.

Steps of 1k, 5k, 10k, 20k, 50k connected devices (``--quick``: 1k, 5k), each one a distinct
account that did Hello → Synced and then only pings (25 s keepalive, as the client runtime
does). After each step: server RSS per connection (VmRSS minus the RSS before the first
connection, divided by the count) and its idle CPU over an interval (from /proc/<pid>/stat).

The connections come from two load processes, spread over loopback source addresses
127.0.0.2, 127.0.0.3, … (at most :data:`PER_ADDRESS` each) so no address runs out of ephemeral
ports. Accounts are created once through REST (concurrently) and cached with the server's data
in ``bench/.peers/connections`` for later steps and later runs.

    python -m bench.connections [--quick] [--steps 1000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.loadgen import (
    BENCH_DIR,
    CACHE_DIR,
    LOOPBACK,
    NET_TIMEOUT,
    Account,
    ServerProcess,
    connect_device,
    cpu_seconds,
    create_accounts,
    free_port,
    install_uvloop,
    raise_nofile,
    rss_bytes,
    tidings_server,
    ws_url,
)
from tidings.protocol import frames as fr

FULL_STEPS = (1_000, 5_000, 10_000, 20_000, 50_000)
QUICK_STEPS = (1_000, 5_000)
#: Connections per loopback source address (each has ~28k ephemeral ports).
PER_ADDRESS = 10_000
#: Load processes at least; more when one process may not hold its share of descriptors.
LOAD_PROCESSES = 2
#: Descriptors a process keeps for other things than the benchmark's sockets.
FD_MARGIN = 200
KEEPALIVE = 25.0
#: Connections a load process opens at once.
OPEN_CONCURRENCY = 100
#: Longest time one step may take to open its connections (seconds).
STEP_TIMEOUT = 600.0

DATA_DIR = CACHE_DIR / "connections"
ACCOUNTS_FILE = DATA_DIR / "accounts.json"

Json = dict[str, Any]


# --------------------------------------------------------------------------- accounts cache


def _load_cache() -> list[Account]:
    try:
        rows = json.loads(ACCOUNTS_FILE.read_text())
    except (OSError, ValueError):
        return []
    return [Account(r["username"], r["account_id"], r["token"]) for r in rows]


def _save_cache(accounts: list[Account]) -> None:
    rows = [
        {"username": a.username, "account_id": a.account_id, "token": a.token} for a in accounts
    ]
    ACCOUNTS_FILE.write_text(json.dumps(rows))


def _cache_valid(url: str, accounts: list[Account]) -> bool:
    """The cached accounts still exist on the server (its database was not reset)."""
    if not accounts:
        return True
    for account in (accounts[0], accounts[-1]):
        response = httpx.get(f"{url}/v1/me", headers=account.auth(), timeout=NET_TIMEOUT)
        if response.status_code != 200:
            return False
    return True


def ensure_accounts(url: str, count: int) -> tuple[list[Account], float]:
    """At least ``count`` accounts, created only where the cache has too few (in chunks saved
    as they complete); the seconds spent creating them."""
    cached = _load_cache()
    t0 = time.monotonic()
    for _ in range(2 * (count // 5_000 + 2)):  # bounded: a chunk may come back short
        if len(cached) >= count:
            break
        tag = secrets.token_hex(3)
        names = [f"c{tag}{i:05d}" for i in range(min(5_000, count - len(cached)))]
        cached += asyncio.run(create_accounts(url, names, 48, strict=False))
        _save_cache(cached)
    if len(cached) < count:
        raise RuntimeError(f"only {len(cached)} of {count} accounts could be created")
    return cached[:count], time.monotonic() - t0


def start_server() -> tuple[ServerProcess, str]:
    """The server on the persistent data dir; the dir is wiped when the cache is stale."""
    for attempt in range(2):
        port = free_port()
        server = tidings_server(DATA_DIR, port).start()
        url = f"http://{LOOPBACK}:{port}"
        try:
            server.wait_http(f"{url}/v1/health")
            if _cache_valid(url, _load_cache()):
                return server, url
        except BaseException:
            server.stop()
            raise
        server.stop()
        if attempt == 0:
            shutil.rmtree(DATA_DIR, ignore_errors=True)
    raise RuntimeError("the server does not accept freshly created accounts")


# --------------------------------------------------------------------------- load processes


async def _worker() -> None:
    """Holds connections. stdin: a JSON set-up line, then ``grow N`` lines; answers one JSON
    line per command. EOF or ``quit`` ends it (sockets drop with the process)."""
    loop = asyncio.get_running_loop()
    setup = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    url: str = setup["url"]
    tokens: list[str] = setup["tokens"]
    addresses: list[str] = setup["addresses"]
    held: list[ClientConnection] = []
    failures: list[str] = []
    retries = [0]
    due: deque[tuple[float, ClientConnection]] = deque()

    async def keepalive() -> None:
        """A Ping frame from each connection every KEEPALIVE seconds, as the client runtime
        sends (the server counts frames, not WebSocket pings, as liveness)."""
        ping = fr.encode(fr.Ping())
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, ws = due.popleft()
                if ws.close_code is not None:
                    continue
                try:
                    # Pongs queue up unread: 256 of them (max_queue) take ~1.8 h to fill
                    await ws.send(ping)
                except ConnectionClosed:
                    continue
                due.append((now + KEEPALIVE, ws))

    pinger = asyncio.ensure_future(keepalive())
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            pinger.cancel()
            return
        target = min(int(line[1]), len(tokens))
        t0 = time.monotonic()
        queue = list(range(len(held), target))
        queue.reverse()

        async def opener(queue: list[int] = queue) -> None:
            while queue:
                i = queue.pop()
                address = addresses[i // PER_ADDRESS % len(addresses)]
                for attempt in range(3):  # a client reconnects: so does this one, twice
                    try:
                        ws, _ = await connect_device(url, tokens[i], local_addr=(address, 0))
                    except Exception as exc:
                        if attempt == 2:
                            failures.append(f"{type(exc).__name__}: {exc}")
                        else:
                            retries[0] += 1
                            await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                    held.append(ws)
                    due.append((time.monotonic() + KEEPALIVE, ws))
                    break

        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await asyncio.gather(*(opener() for _ in range(OPEN_CONCURRENCY)))
        except TimeoutError:
            failures.append(f"timed out after {STEP_TIMEOUT:.0f} s")
        alive = sum(1 for ws in held if ws.close_code is None)
        answer = {
            "open": alive,
            "seconds": time.monotonic() - t0,
            "failures": failures[-5:],
            "failed": len(failures),
            "retries": retries[0],
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class _LoadProcess:
    def __init__(self, url: str, tokens: list[str], addresses: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.connections", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR.parent,
            preexec_fn=raise_nofile,
        )
        self._send(json.dumps({"url": url, "tokens": tokens, "addresses": addresses}))

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def grow(self, target: int) -> None:
        self._send(f"grow {target}")

    def answer(self) -> Json:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"connection load process exited with {self.proc.wait()}")
        result: Json = json.loads(line)
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("quit")
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- the measurement


def open_files_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of a running process (from /proc/<pid>/limits)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open files limit for pid {pid}")


def plan_steps(steps: tuple[int, ...], server_limit: int) -> tuple[list[int], str | None]:
    """The steps the server's descriptor limit allows (the last one capped at the limit) and,
    if some had to go, why."""
    capacity = server_limit - FD_MARGIN
    planned = [s for s in steps if s <= capacity]
    if len(planned) == len(steps):
        return planned, None
    if not planned or planned[-1] < capacity:
        planned.append(capacity)
    why = (
        f"{steps[-1]:,} connections need as many descriptors in the server process; its "
        f"RLIMIT_NOFILE is {server_limit:,} after raising it as far as allowed (its hard "
        f"limit: lifting that needs CAP_SYS_RESOURCE): the last step is capped at {capacity:,}"
    )
    return planned, why


def measure(quick: bool, work_dir: Path, steps: tuple[int, ...] | None = None) -> Json:
    steps = steps or (QUICK_STEPS if quick else FULL_STEPS)
    idle_seconds = 3.0 if quick else 10.0
    own_limit = raise_nofile()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    server, url = start_server()
    loads: list[_LoadProcess] = []
    result: Json = {"target": steps[-1], "steps": [], "keepalive_s": KEEPALIVE}
    try:
        server_limit = open_files_limit(server.pid)
        planned, why = plan_steps(steps, server_limit)
        result["server_open_files_limit"] = server_limit
        if why:
            result["stopped"] = why
        top = planned[-1]
        accounts, created_s = ensure_accounts(url, top)
        result["account_setup_seconds"] = round(created_s, 1)
        time.sleep(2)
        baseline = rss_bytes(server.pid)
        result["baseline_rss_mib"] = baseline / 2**20
        processes = max(LOAD_PROCESSES, -(-top // (own_limit - FD_MARGIN)))
        n_addr = -(-top // (PER_ADDRESS * processes)) or 1
        for k in range(processes):
            # each load process has its own source addresses and a slice of the accounts
            addresses = [f"127.0.0.{2 + k * n_addr + j}" for j in range(n_addr)]
            tokens = [a.token for a in accounts[k::processes]]
            loads.append(_LoadProcess(ws_url(url), tokens, addresses))
        result["source_addresses"] = n_addr * processes
        result["load_processes"] = processes
        for step in planned:
            t0 = time.monotonic()
            for k, load in enumerate(loads):
                load.grow(len(range(k, step, processes)))
            answers = [load.answer() for load in loads]
            opened = sum(a["open"] for a in answers)
            open_s = time.monotonic() - t0
            server.check_alive()
            time.sleep(2)
            cpu0 = cpu_seconds(server.pid)
            time.sleep(idle_seconds)
            idle_cpu = 100 * (cpu_seconds(server.pid) - cpu0) / idle_seconds
            rss = rss_bytes(server.pid)
            result["steps"].append(
                {
                    "connections": opened,
                    "aimed": step,
                    "rss_mib": rss / 2**20,
                    "per_conn_kib": (rss - baseline) / max(1, opened) / 1024,
                    "idle_cpu_pct": idle_cpu,
                    "open_seconds": open_s,
                    "open_retries": sum(a["retries"] for a in answers),
                    "open_failed": sum(a["failed"] for a in answers),
                }
            )
            failures = [f for a in answers for f in a["failures"]]
            if opened < step * 0.99:
                result["stopped"] = f"{opened:,} of {step:,} open; {failures[:3]}"
                break
    finally:
        for load in loads:
            load.stop()
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", default="", help="comma-separated connection counts")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        raise_nofile()
        install_uvloop()
        asyncio.run(_worker())
        return
    steps = tuple(int(s) for s in args.steps.split(",") if s) or None
    work_dir = CACHE_DIR / "runs" / "connections"
    print(json.dumps(measure(args.quick, work_dir, steps), indent=2))


if __name__ == "__main__":
    main()
