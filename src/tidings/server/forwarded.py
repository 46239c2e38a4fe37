"""Who the client is behind a reverse proxy: ``X-Forwarded-For`` or ``Forwarded`` (RFC 7239),
believed only from the proxies the operator names (setting ``forwarded_allow_ips``).

By default no header is believed and the client is the TCP peer: anybody can send these
headers, and a server that believed them from any peer would let every client pick the address
its per-IP limits are keyed on. Behind a proxy, name the proxy's addresses and the header it
sets (``forwarded_header``: ``x-forwarded-for``, what nginx, Caddy, Traefik and HAProxy set,
or ``forwarded``); only that header is read, since a client could forge the other one and the
proxy would pass it on untouched. The client is the rightmost address in the header that is not
itself a trusted proxy.

:class:`ForwardedHeaders` is ASGI middleware around the whole application, so REST requests and
WebSocket upgrades see the same ``scope["client"]``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The headers one may name in ``forwarded_header``.
HEADERS = ("x-forwarded-for", "forwarded")


class TrustedProxies:
    """The peers whose forwarded headers are believed: ``"*"`` (any), or comma-separated
    addresses and networks; empty, none."""

    def __init__(self, spec: str) -> None:
        self.any = False
        self.networks: list[IpNetwork] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        address = parse_ip(str(host))
        if address is None:
            return False
        return any(address in network for network in self.networks)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a header or a socket spells it: ``1.2.3.4``, ``1.2.3.4:5``, ``::1``,
    ``[::1]:5``, ``"[::1]"``; an IPv4-mapped IPv6 address becomes IPv4. None if it is none."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` of every element of ``Forwarded`` headers, in order (an element without
    one counts as unknown)."""
    found: list[str] = []
    for value in values:
        for element in value.split(","):
            node = ""
            for pair in element.split(";"):
                name, _, item = pair.partition("=")
                if name.strip().lower() == "for":
                    node = item.strip()
            found.append(node)
    return found


def forwarded_client(
    headers: Iterable[tuple[bytes, bytes]], trusted: TrustedProxies, header: str
) -> str | None:
    """The client address the ``header`` lines name, walking from the right past trusted
    proxies; None if they name none (or an address that is not an IP address)."""
    name = header.encode("ascii")
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    if not values:
        return None
    if header == "forwarded":
        hops = _forwarded_for(values)
    else:
        hops = [hop for value in values for hop in value.split(",")]
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            return None
        if trusted.any or address not in trusted:
            return str(address)
    # Every hop is a trusted proxy: the first one is the nearest thing to a client.
    first = parse_ip(hops[0])
    return None if first is None else str(first)


class ForwardedHeaders:
    """ASGI middleware: an HTTP or WebSocket scope whose peer is a trusted proxy gets the client
    address that proxy's header names (module docstring); any other scope is passed as it is."""

    def __init__(self, app: Any, trusted: TrustedProxies, header: str = "x-forwarded-for") -> None:
        if header not in HEADERS:
            raise ValueError(f"forwarded_header must be one of {', '.join(HEADERS)}")
        self.app = app
        self.trusted = trusted
        self.header = header

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            peer = scope.get("client")
            if peer is not None and peer[0] in self.trusted:
                client = forwarded_client(scope["headers"], self.trusted, self.header)
                if client is not None:
                    scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
