"""How the client reaches a server safely: which URLs it accepts and which certificates it
trusts.

- A plain ``http://`` (``ws://``) URL is refused unless its host is a loopback address
  (``localhost``, 127.0.0.0/8, ``::1``) or the caller said ``insecure`` (``--insecure``,
  ``ClientConfig(insecure=True)``): device tokens and metadata must not cross a network in the
  clear by accident.
- Every connection the client opens, REST and WebSocket, verifies the server's certificate
  against an explicit :class:`ssl.SSLContext`: the CA file the user named (``--ca-file``,
  ``ClientConfig.ca_file``: a private CA, a self-signed server) or else certifi's bundle, never
  the platform's store, which Python on Android does not have.

A profile remembers the choice made when it was created (``connection.json``), so later
commands on it need not repeat the flags.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import certifi

from .errors import ClientError

#: The profile file that keeps ``insecure`` and ``ca_file``.
CONNECTION_NAME = "connection.json"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, insecure: bool) -> None:
    """Refuse a plain-text URL to anything but loopback unless ``insecure``."""
    parts = urlsplit(url)
    if parts.scheme in ("https", "wss"):
        return
    if parts.scheme in ("http", "ws"):
        if insecure or is_loopback(parts.hostname):
            return
        raise ClientError(
            "insecure_url",
            f"refusing {parts.scheme}:// to {parts.hostname}: use https:// (or --insecure /"
            " ClientConfig(insecure=True) on a network you trust)",
        )
    raise ClientError("bad_url", "the server URL must start with http:// or https://")


@functools.cache
def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or certifi.where())


def ssl_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The context every TLS connection of the client uses: ``ca_file`` or certifi's CAs."""
    if ca_file is not None and not Path(ca_file).is_file():
        raise ClientError("bad_ca_file", f"no CA file at {ca_file}")
    try:
        return _context(None if ca_file is None else str(Path(ca_file).resolve()))
    except (OSError, ssl.SSLError) as exc:
        raise ClientError("bad_ca_file", f"cannot load CA file {ca_file}: {exc}") from exc


def save(profile: Path, insecure: bool, ca_file: str | None) -> None:
    """Remember the connection settings in ``profile`` (nothing to write for the defaults)."""
    path = profile / CONNECTION_NAME
    if not insecure and ca_file is None:
        path.unlink(missing_ok=True)
        return
    data = {"insecure": insecure, "ca_file": str(Path(ca_file).resolve()) if ca_file else None}
    path.write_text(json.dumps(data), encoding="utf-8")


def load(profile: Path) -> tuple[bool, str | None]:
    """``(insecure, ca_file)`` remembered in ``profile``; the defaults if none."""
    try:
        data = json.loads((profile / CONNECTION_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    ca_file = data.get("ca_file")
    return bool(data.get("insecure", False)), ca_file if isinstance(ca_file, str) else None
