"""Checking a WebPush endpoint before the server ever posts to it (server-side request forgery).

A WebPush endpoint is a URL the client chooses, and the server will send requests to it. So a
registration is refused unless the endpoint is ``https`` (plain ``http`` only with
``allow_http``) and every address its host resolves to is a public unicast address: loopback,
private (RFC 1918, ULA), link-local, carrier-grade NAT, multicast, reserved and unspecified
addresses are refused unless ``allow_private`` (tests, a distributor on the LAN). URLs with
user info are refused too.

The check runs when the device registers. A host whose DNS later points somewhere private
(rebinding) is not re-checked per push: an operator worried about that routes the server's
outgoing traffic through an egress proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def public_address(address: str) -> bool:
    """True if ``address`` is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_loopback:
        return False
    if ip.is_link_local or ip.is_private or (ip.version == 4 and ip in _CGNAT):
        return False
    return ip.is_global


async def check_endpoint(url: str, *, allow_http: bool, allow_private: bool) -> str | None:
    """Why ``url`` may not be a push endpoint, or None if it may."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the endpoint is not a valid URL"
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_http):
        return "the endpoint must be an https URL"
    host = parts.hostname
    if not host:
        return "the endpoint has no host"
    if parts.username is not None or parts.password is not None:
        return "the endpoint must not carry credentials"
    if allow_private:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        return "the endpoint's host does not resolve"
    addresses = {str(info[4][0]) for info in infos}
    if not addresses:
        return "the endpoint's host does not resolve"
    if not all(public_address(a) for a in addresses):
        return "the endpoint points to a private, loopback or link-local address"
    return None
