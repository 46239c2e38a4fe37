"""HTTP-level guards of a real `tidings serve` process: slow clients (slowloris) are cut off and
cannot lock others out, forwarded headers count only from configured proxies and IPv6 limits
key on the /64, and the data directory and database files are private to the server's user."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from tests.integration.conftest import free_port

#: The `tidings` command of the interpreter running the tests.
TIDINGS = str(Path(sys.executable).with_name("tidings"))


@contextlib.contextmanager
def tidings_serve(
    data_dir: Path, env: Mapping[str, str], *, open_files: int | None = None
) -> Iterator[tuple[str, int, Path]]:
    """`tidings serve` on a free loopback port, optionally with a low RLIMIT_NOFILE (soft and
    hard, so the server cannot raise it); yields (url, port, log path)."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # the data dir is the server's to make
    log_path = data_dir.parent / f"serve-{port}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    environ.update(env)

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    cmd = [TIDINGS, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=environ, preexec_fn=limit
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield url, port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (it may have said 408 first)."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


# --------------------------------------------------------------------------- slowloris


def test_half_open_requests_are_closed_and_do_not_lock_others_out(tmp_path, store_env):
    header_timeout = 2.0
    env = {
        **store_env,
        "TIDINGS_HEADER_TIMEOUT": str(header_timeout),
        "TIDINGS_MAX_PENDING_CONNECTIONS": "100",
    }
    # 350 half-open requests against a server with 256 file descriptors: without a deadline
    # and a cap they would hold every descriptor and nobody else could connect.
    with tidings_serve(tmp_path / "data", env, open_files=256) as (url, port, _):
        slow: list[socket.socket] = []
        try:
            started = time.monotonic()
            for _ in range(350):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /v1/hea")  # half a request line, never finished
                sock.setblocking(False)
                slow.append(sock)
            # While they are open, a legitimate client is served.
            with httpx.Client(timeout=5) as http:
                for _ in range(5):
                    assert http.get(f"{url}/v1/health").status_code == 200
            # Every slow one is closed within the header timeout (plus a little slack).
            deadline = started + header_timeout + 3.0
            while time.monotonic() < deadline and not all(_closed(s) for s in slow):
                time.sleep(0.1)
            still_open = [s for s in slow if not _closed(s)]
            assert still_open == [], f"{len(still_open)} half-open connections still open"
            with httpx.Client(timeout=5) as http:
                assert http.get(f"{url}/v1/health").status_code == 200
        finally:
            for sock in slow:
                sock.close()


def test_a_request_whose_headers_never_finish_gets_408(tmp_path, store_env):
    env = {**store_env, "TIDINGS_HEADER_TIMEOUT": "1"}
    with tidings_serve(tmp_path / "data", env) as (_, port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n")  # no blank line
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408")
            assert time.monotonic() - started < 3.0
        # A kept-alive connection that starts a second request and stalls is cut off too.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b"}" not in first:  # the whole answer: its JSON body ends with }
                first += sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /v1/hea")
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), (first, answer)


# --------------------------------------------------------------------------- forwarded headers


def _sign_up(http: httpx.Client, username: str, forwarded_for: str) -> int:
    answer = http.post(
        "/v1/accounts", json={"username": username}, headers={"X-Forwarded-For": forwarded_for}
    )
    return answer.status_code


def test_a_spoofed_forwarded_header_from_a_non_proxy_is_ignored(tmp_path, store_env):
    env = {**store_env, "TIDINGS_ACCOUNTS_PER_MINUTE": "2"}
    with (
        tidings_serve(tmp_path / "data", env) as (url, _, _),
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        assert _sign_up(http, "alice", "198.51.100.1") == 201
        assert _sign_up(http, "bob", "198.51.100.2") == 201
        # Each "different" address is really 127.0.0.1: its bucket is empty.
        assert _sign_up(http, "carol", "198.51.100.3") == 429
        forwarded = http.post(
            "/v1/accounts", json={"username": "dave"}, headers={"Forwarded": "for=192.0.2.1"}
        )
        assert forwarded.status_code == 429


def test_forwarded_headers_from_a_configured_proxy_count_and_ipv6_keys_on_the_64(
    tmp_path, store_env
):
    env = {
        **store_env,
        "TIDINGS_ACCOUNTS_PER_MINUTE": "2",
        "TIDINGS_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    with (
        tidings_serve(tmp_path / "data", env) as (url, _, _),
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        assert _sign_up(http, "alice", "2001:db8:1:2::1") == 201
        assert _sign_up(http, "bob", "2001:db8:1:2::abcd") == 201
        # A third address in the same /64 shares the bucket ...
        assert _sign_up(http, "carol", "2001:db8:1:2:ffff::3") == 429
        # ... another /64 and an IPv4 address have their own.
        assert _sign_up(http, "dave", "2001:db8:1:3::1") == 201
        assert _sign_up(http, "erin", "198.51.100.7") == 201
        # A client's own entry left of the proxy's does not help: the rightmost one counts.
        assert _sign_up(http, "frank", "203.0.113.1, 2001:db8:1:2::9") == 429


# --------------------------------------------------------------------------- permissions


@pytest.mark.sqlite_only("the SQLite database's own files (and WAL, SHM) are 0600")
def test_the_data_dir_and_database_files_are_private(tmp_path):
    data_dir = tmp_path / "new" / "data"
    with (
        tidings_serve(data_dir, {}) as (url, _, log_path),
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        assert http.post("/v1/accounts", json={"username": "alice"}).status_code == 201
        database = data_dir / "tidings.sqlite3"
        files = [database, data_dir / "tidings.sqlite3-wal", data_dir / "tidings.sqlite3-shm"]
        assert all(f.exists() for f in files)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files
        }
        assert "others may read" not in log_path.read_text()


def test_a_data_dir_others_can_read_is_warned_about(tmp_path, store_env):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    with tidings_serve(data_dir, store_env) as (_, _, log_path):
        log = log_path.read_text()
    assert "others may read the server's data" in log and str(data_dir) in log
