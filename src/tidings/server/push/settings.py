"""Settings of each push provider, one frozen dataclass per provider.

Guarantees: settings hold paths to credentials, never the credentials themselves, so a
settings object can be logged or compared without leaking a key. Values are checked when the
object is built; a bad value raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from urllib.parse import urlsplit

APNS_PRODUCTION_URL = "https://api.push.apple.com"
APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com"
FCM_URL = "https://fcm.googleapis.com"
#: APNs rejects provider tokens older than an hour; refreshing at 50 minutes keeps a margin
APNS_TOKEN_REFRESH_SECONDS = 50 * 60
#: RFC 8292: a VAPID token's ``exp`` must be no more than 24 hours ahead
VAPID_MAX_LIFETIME_SECONDS = 24 * 60 * 60


def _check_url(field: str, url: str, *, https_only: bool) -> None:
    parts = urlsplit(url)
    allowed = ("https",) if https_only else ("https", "http")
    if parts.scheme not in allowed or not parts.hostname:
        raise ValueError(f"{field}: expected an absolute {'/'.join(allowed)} URL, got {url!r}")


def _check_positive(**values: float) -> None:
    for field, value in values.items():
        if value <= 0:
            raise ValueError(f"{field}: must be positive, got {value!r}")


def ssl_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` gets: the system trust store, or only ``ca_file``."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


@dataclasses.dataclass(frozen=True, slots=True)
class ApnsSettings:
    """Apple Push Notification service, HTTP/2 with token-based (``.p8``) authentication."""

    #: the ``.p8`` signing key downloaded from the Apple developer account (PKCS#8 PEM, P-256)
    key_path: Path
    #: the 10-character Key ID of that key; sent as the JWT header ``kid``
    key_id: str
    #: the 10-character Team ID; sent as the JWT claim ``iss``
    team_id: str
    #: the app's bundle id, sent as ``apns-topic`` when a registration names none
    topic: str
    #: production or sandbox endpoint (or a stand-in); the path ``/3/device/<token>`` is appended
    base_url: str = APNS_PRODUCTION_URL
    #: a PEM CA bundle to trust instead of the system store (a private relay, the test stand-in)
    ca_file: Path | None = None
    #: seconds to establish the TLS connection
    connect_timeout: float = 10.0
    #: seconds for one request, end to end
    request_timeout: float = 15.0
    #: age at which the cached provider JWT is replaced (APNs refuses tokens over 60 minutes)
    token_refresh_seconds: float = APNS_TOKEN_REFRESH_SECONDS
    #: seconds APNs keeps trying an undeliverable push (``apns-expiration`` = now + this)
    expiration_seconds: int = 3600

    def __post_init__(self) -> None:
        _check_url("base_url", self.base_url, https_only=True)
        if not (self.key_id and self.team_id and self.topic):
            raise ValueError("key_id, team_id and topic must be set")
        _check_positive(
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            token_refresh_seconds=self.token_refresh_seconds,
            expiration_seconds=self.expiration_seconds,
        )
        if self.token_refresh_seconds >= 3600:
            raise ValueError("token_refresh_seconds: APNs tokens expire after 3600 seconds")


@dataclasses.dataclass(frozen=True, slots=True)
class FcmSettings:
    """Firebase Cloud Messaging, HTTP v1 API with a service account (OAuth2 JWT-bearer)."""

    #: the service-account JSON (needs client_email, private_key, token_uri, project_id)
    service_account_path: Path
    #: the FCM endpoint; ``/v1/projects/<project>/messages:send`` is appended
    base_url: str = FCM_URL
    #: the OAuth2 token endpoint; None uses the service account's ``token_uri``
    token_uri: str | None = None
    #: seconds FCM keeps an undelivered message (``android.ttl``)
    ttl_seconds: int = 3600
    #: seconds to establish a connection
    connect_timeout: float = 10.0
    #: seconds for one request, end to end
    request_timeout: float = 15.0
    #: an access token is replaced this many seconds before it expires
    token_refresh_margin: float = 300.0
    #: a PEM CA bundle to trust instead of the system store
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        _check_url("base_url", self.base_url, https_only=False)
        if self.token_uri is not None:
            _check_url("token_uri", self.token_uri, https_only=False)
        _check_positive(
            ttl_seconds=self.ttl_seconds,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
        )
        if self.token_refresh_margin < 0:
            raise ValueError("token_refresh_margin: must not be negative")


@dataclasses.dataclass(frozen=True, slots=True)
class WebPushSettings:
    """WebPush / UnifiedPush: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID."""

    #: the server's data directory; the generated VAPID key lives in ``<data_dir>/push/``
    data_dir: Path
    #: the VAPID ``sub`` claim: how a push service can reach the operator (mailto: or https:)
    contact: str
    #: an operator-provided VAPID key (P-256 PEM); None generates one once in ``data_dir``
    vapid_private_key_path: Path | None = None
    #: seconds the push service keeps an undelivered message (``TTL`` header)
    ttl_seconds: int = 3600
    #: lifetime of a VAPID token (``exp`` - now); RFC 8292 allows at most 24 hours
    jwt_lifetime_seconds: int = 12 * 60 * 60
    #: seconds to establish a connection
    connect_timeout: float = 10.0
    #: seconds for one request, end to end
    request_timeout: float = 15.0
    #: a PEM CA bundle to trust instead of the system store (self-hosted distributors)
    ca_file: Path | None = None
    #: also push to plain-http endpoints (a distributor on a trusted LAN, the test stand-in);
    #: off by default, since the payload is encrypted but the VAPID token is not
    allow_http_endpoints: bool = False

    def __post_init__(self) -> None:
        if not self.contact.startswith(("mailto:", "https://")):
            raise ValueError("contact: must be a mailto: or https: URI (RFC 8292 'sub')")
        if not 0 < self.jwt_lifetime_seconds <= VAPID_MAX_LIFETIME_SECONDS:
            raise ValueError("jwt_lifetime_seconds: must be between 1 and 86400")
        _check_positive(
            ttl_seconds=self.ttl_seconds,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
        )

    @property
    def vapid_key_file(self) -> Path:
        """Where the VAPID key is read from (and generated into, if it is the default)."""
        if self.vapid_private_key_path is not None:
            return self.vapid_private_key_path
        return self.data_dir / "push" / "vapid_private_key.pem"
