"""Blob transfers use the client's TLS policy: a blob URL on https is trusted through the
profile's CA file exactly like the server itself, and not through anything else (certifi's
CAs do not know a private CA)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidings.client import tls
from tidings.client.errors import TlsFailed
from tidings.client.transfer import Transfers

BLOB = bytes(range(256)) * 64


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blobs.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def https_blob(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A one-route HTTPS server answering any GET with :data:`BLOB`; its URL and CA file."""
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Length: {len(BLOB)}\r\nConnection: close\r\n\r\n".encode()
                + BLOB
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://localhost:{port}", cert
    finally:
        server.close()
        await server.wait_closed()


async def test_the_profiles_ca_file_is_trusted_for_blobs(
    https_blob: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca_file = https_blob
    transfers = Transfers(url, tls.ssl_context(ca_file))
    try:
        await transfers.get("/v1/blobs/x", tmp_path / "blob", len(BLOB))
    finally:
        await transfers.aclose()
    assert (tmp_path / "blob").read_bytes() == BLOB


async def test_without_the_ca_file_the_blob_server_is_not_trusted(
    https_blob: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = https_blob
    transfers = Transfers(url)  # the default: certifi's CAs only
    try:
        with pytest.raises(TlsFailed):
            await transfers.get("/v1/blobs/x", tmp_path / "blob", len(BLOB))
    finally:
        await transfers.aclose()
