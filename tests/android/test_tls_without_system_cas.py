"""Android has no CA store Python can read: every client connection (REST and WebSocket)
must use the explicit context of client/tls.py. Simulated here: the client runs with
SSL_CERT_FILE/SSL_CERT_DIR pointing at an empty directory, against a TLS server whose private
CA is given as ``ca_file``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.integration.conftest import free_port
from tests.standins.asgi import make_tls_files

CLI = [sys.executable, "-m", "tidings.command"]
CLIENT = """
import asyncio, ssl, sys, urllib.request
from pathlib import Path
from tidings.client import Client
from tidings.client.api import ClientConfig

url, profile, ca = sys.argv[1:4]
try:  # the platform's store is empty here, as on Android
    urllib.request.urlopen(url + "/v1/health", context=ssl.create_default_context())
    print("system trust worked")
except Exception:
    print("no system trust")

async def main() -> None:
    config = ClientConfig(ca_file=ca)
    client = await Client.create_account(Path(profile), url, "alice", config=config)
    await client.start()
    await client.wait_synced(20, fail_fast=True)  # the WebSocket, over TLS
    print("synced", client.connection_state.value)
    await client.close()

asyncio.run(main())
"""


def test_the_client_trusts_its_ca_file_without_a_system_store(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path / "d"),
         "--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health", verify=str(tls.ca_file)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        empty = tmp_path / "no-cas"
        empty.mkdir()
        android = {**env, "SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, url, str(tmp_path / "alice"), str(tls.ca_file)],
            capture_output=True, text=True, timeout=90, env=android, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:2] == ["no system trust", "synced online"]
    finally:
        server.kill()
        server.wait()
        log.close()
