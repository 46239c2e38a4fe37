"""``tidings serve`` runs the real server until SIGTERM; bad settings are typed errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_serve_answers_health_and_stops_on_sigterm(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    port = free_port()
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "tidings", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data", str(data)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")} | store_env
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 20
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                healthy = answer.status_code == 200 and answer.json()["ok"] is True
            except httpx.HTTPError:
                pass
            if healthy:
                break
            time.sleep(0.05)
        assert healthy, (tmp_path / "serve.log").read_text()
        assert data.is_dir()
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Traceback" not in (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_with_a_bad_config_file_is_a_typed_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nport = "not a number"\n')
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "serve", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])
    assert error["code"] == "bad_config"
    assert "port" in error["message"]
