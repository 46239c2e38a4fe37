"""A server that cannot be reached is reported with its cause (refused, wrong scheme, DNS,
timeout), over REST and the WebSocket, against real sockets on loopback; one-shot CLI commands
fail fast when the first connect is refused."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidings.cli.main import main
from tidings.client import Client
from tidings.client.errors import (
    ConnectionRefused,
    HostNotFound,
    NotConnected,
    ServerTimeout,
    WrongScheme,
)
from tidings.client.rest import Rest
from tidings.client.store import LocalStore
from tidings.client.types import Account
from tidings.crypto import IdentityKeyPair
from tidings.protocol import rest, routes


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _tls_context(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


async def _answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _server(context: ssl.SSLContext | None) -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer_http, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def tls_port(tmp_path: Path) -> AsyncIterator[int]:
    async for port in _server(_tls_context(tmp_path)):
        yield port


@pytest.fixture
async def plain_port() -> AsyncIterator[int]:
    async for port in _server(None):
        yield port


@pytest.fixture
def silent_port() -> AsyncIterator[int]:
    """A socket that listens (connects succeed, in its backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def _health(url: str, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    http = Rest(url, timeout=timeout)
    try:
        await http.call(routes.HEALTH, rest.Health)
    finally:
        await http.aclose()


async def test_rest_refused() -> None:
    with pytest.raises(ConnectionRefused) as err:
        await _health(f"http://127.0.0.1:{_closed_port()}")
    assert err.value.cause == "refused" and "refused" in err.value.message


async def test_rest_plain_http_to_a_tls_port(tls_port: int) -> None:
    with pytest.raises(WrongScheme) as err:
        await _health(f"http://127.0.0.1:{tls_port}")
    assert err.value.cause == "wrong_scheme" and "https://" in err.value.message


async def test_rest_tls_to_a_plain_port(plain_port: int) -> None:
    with pytest.raises(WrongScheme) as err:
        await _health(f"https://127.0.0.1:{plain_port}")
    assert "http://" in err.value.message


async def test_rest_unknown_host() -> None:
    with pytest.raises(HostNotFound) as err:
        await _health("http://nonexistent.invalid:8080")
    assert err.value.cause == "dns" and "nonexistent.invalid" in err.value.message


async def test_rest_timeout(silent_port: int) -> None:
    with pytest.raises(ServerTimeout) as err:
        await _health(f"http://127.0.0.1:{silent_port}", timeout=0.5)
    assert err.value.cause == "timeout"


def _offline_profile(path: Path, server_url: str) -> Path:
    """A profile for an account at ``server_url`` (no server needed to make it)."""
    path.mkdir()
    (path / "token").write_text("k" * 16 + "." + "s" * 43)
    store = LocalStore(path / "tidings.db")
    store.set_account(Account("a_test", "alice", 1, server_url))
    store.keys.set_identity(IdentityKeyPair.generate())
    store.close()
    return path


@pytest.mark.parametrize("case", ["refused", "wrong_scheme", "dns"])
async def test_websocket_connect_says_why_and_fails_fast(
    case: str, tmp_path: Path, tls_port: int
) -> None:
    url = {
        "refused": f"http://127.0.0.1:{_closed_port()}",
        "wrong_scheme": f"http://127.0.0.1:{tls_port}",
        "dns": "https://nonexistent.invalid:8443",
    }[case]
    client = await Client.open(_offline_profile(tmp_path / "p", url))
    try:
        await client.start()
        started = time.monotonic()
        with pytest.raises(NotConnected) as err:
            await client.wait_synced(timeout=20, fail_fast=True)
        assert time.monotonic() - started < 5
        assert err.value.cause == case
        assert client.connection.last_error == err.value.message
    finally:
        await client.close()


def test_cli_sync_fails_fast_when_the_server_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = _offline_profile(tmp_path / "p", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    code = main(["sync", "--profile", str(profile)])
    assert time.monotonic() - started < 5
    assert code != 0
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err
