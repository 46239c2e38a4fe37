"""Running a server for real people, end to end: `tidings serve` terminating TLS with a
self-signed certificate (made here with `cryptography`) that the client trusts through
--ca-file, a SIGHUP that swaps the certificate without dropping the listener, http:// to a
non-loopback host refused, invite-only sign-up through `tidings admin`, /metrics from
loopback, and JSON logs with request ids and no secrets."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.conftest import free_port

CLI = [sys.executable, "-m", "tidings"]


def make_cert(directory: Path, name: str) -> tuple[Path, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert_path


def served_cert(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_tls_admin_invites_metrics_and_json_logs(tmp_path, store_env):
    data = tmp_path / "data"
    cert, key, ca = make_cert(tmp_path, "first")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_REGISTRATION_OPEN"] = "false"
    env.update(store_env)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
             "--tls-cert", str(cert), "--tls-key", str(key), "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health", verify=str(ca)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert httpx.get(f"{url}/v1/ready", verify=str(ca)).json() == {"ready": True}

        # Registration is closed: no invite, no account.
        refused = run("account", "create", "--json", "--profile", str(tmp_path / "p0"),
                      "--server", url, "--ca-file", str(ca), "eve", check=False)  # fmt: skip
        assert refused.returncode == 1 and "registration_closed" in refused.stderr
        # An invite from the operator, over the admin socket.
        made = json.loads(run("admin", "invite", "create", "--json", "--data", str(data),
                              "--uses", "1", "--expires", "7d").stdout)  # fmt: skip
        token = made["token"]
        invited = ("--server", url, "--ca-file", str(ca), "--invite", token)
        created = run("account", "create", "--json", "--profile", str(tmp_path / "alice"),
                      *invited, "alice")  # fmt: skip
        assert json.loads(created.stdout)["username"] == "alice"
        again = run("account", "create", "--json", "--profile", str(tmp_path / "bob"),
                    *invited, "bob", check=False)  # fmt: skip
        assert again.returncode == 1, "a one-use invite was used twice"
        # Without the CA file the self-signed certificate is not trusted.
        untrusted = run("account", "create", "--json", "--profile", str(tmp_path / "p1"),
                        "--server", url, "carol", check=False)  # fmt: skip
        assert untrusted.returncode == 1
        # Plain http:// to a host that is not loopback is refused before any connection.
        plain = run("account", "create", "--json", "--profile", str(tmp_path / "p2"),
                    "--server", "http://192.0.2.1:8080", "dave", check=False)  # fmt: skip
        assert plain.returncode == 1 and "insecure_url" in plain.stderr

        users = json.loads(run("admin", "user", "list", "--json", "--data", str(data)).stdout)
        assert [u["username"] for u in users["users"]] == ["alice"]
        assert (
            json.loads(run("admin", "stats", "--json", "--data", str(data)).stdout)["accounts"] == 1
        )

        # /metrics from loopback, parsed by prometheus-client's own parser.
        text = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=False).text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"tidings_websocket_connections", "tidings_errors", "tidings_messages_in",
                "tidings_store_commit_seconds", "tidings_push_sent"} <= names  # fmt: skip
        assert 'tidings_errors_total{code="registration_closed",via="http"}' in text

        # A new certificate on SIGHUP, the listener kept.
        before = served_cert(port)
        cert2, key2, _ = make_cert(tmp_path, "second")
        cert.write_bytes(cert2.read_bytes())
        key.write_bytes(key2.read_bytes())
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_cert(port) == before:
            assert time.monotonic() < deadline, "the certificate was not reloaded"
            time.sleep(0.1)
        assert proc.poll() is None
        backup = run("admin", "backup", "--json", "--data", str(data), str(tmp_path / "bk"))
        assert json.loads(backup.stdout)["integrity"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(e.get("request_id") for e in entries)
    assert token not in log_path.read_text()
    alice_token = (tmp_path / "alice" / "token").read_text().strip()
    assert alice_token.split(".")[1] not in log_path.read_text()
