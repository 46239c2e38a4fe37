"""WebPush / UnifiedPush provider: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID.

Guarantees, first:

* The body is always ``aes128gcm``-encrypted to the subscription's own keys, so the push
  service (and any distributor in between) sees ciphertext only. The plaintext itself holds
  only the opaque conversation hint ``c``, the counter ``n`` and the wake kind ``k``, padded
  to a fixed size so alert and silent wakes look alike. Never plaintext, sender names, titles.
* The ``Topic`` header (coalescing) is a hash of the hint, not the hint itself.
* :meth:`WebPushProvider.send` never raises for push-service, network or subscription-key
  errors. The VAPID key is generated once, written with mode 0600, and never logged.

Status mapping: 200/201/202 delivered; 404/410 drop the subscription; 429 and 5xx retry
(honouring ``Retry-After``); 400, 413 and any other status fail permanently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.server.push.ece import encrypt
from tidings.server.push.jws import b64url, load_ec_private_key, sign_es256
from tidings.server.push.provider import (
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    parse_retry_after,
    token_fingerprint,
)
from tidings.server.push.settings import WebPushSettings
from tidings.server.push.transport import make_client, transport_failure

log = logging.getLogger(__name__)

#: plaintext is padded to this many bytes before encryption
PADDED_SIZE = 128
_DELIVERED = frozenset({200, 201, 202})


def load_or_create_vapid_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The VAPID key at ``path``; generated (P-256, PKCS#8 PEM, mode 0600) if absent.

    Creation is atomic: the key is written to a private temporary file and linked into place,
    so two processes starting at once end up with the same key.
    """
    if path.exists():
        return load_ec_private_key(path.read_bytes())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: use its key
            return load_ec_private_key(path.read_bytes())
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("generated a new VAPID key in %s", path)
    return key


def endpoint_origin(endpoint: str) -> str:
    """The VAPID audience: scheme, host and (non-default) port of the endpoint."""
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.netloc:
        raise ValueError("not an absolute URL")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


def topic_for(hint: str) -> str:
    """A ``Topic`` header value (at most 32 base64url characters) that does not reveal the hint."""
    return b64url(hashlib.sha256(b"tidings-topic:" + hint.encode()).digest()[:24])


class WebPushProvider:
    """Sends wakes to WebPush / UnifiedPush endpoints. Safe for concurrent use."""

    platform = Platform.WEBPUSH

    def __init__(
        self,
        settings: WebPushSettings,
        *,
        clock: Callable[[], float] = time.time,
        vapid_key: ec.EllipticCurvePrivateKey | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._key = vapid_key or load_or_create_vapid_key(settings.vapid_key_file)
        self.public_key = b64url(
            self._key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        """The application server key (base64url) that clients subscribe with."""
        self._tokens: dict[str, tuple[str, float]] = {}
        self._client = make_client(
            http2=False,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            ca_file=settings.ca_file,
            transport=transport,
        )

    def vapid_authorization(self, audience: str) -> str:
        """``vapid t=<JWT>, k=<key>``; one token per audience, reused for half its lifetime."""
        now = self._clock()
        cached = self._tokens.get(audience)
        if cached is not None and now < cached[1]:
            return cached[0]
        lifetime = self._settings.jwt_lifetime_seconds
        claims = {"aud": audience, "exp": int(now) + lifetime, "sub": self._settings.contact}
        value = f"vapid t={sign_es256(self._key, claims)}, k={self.public_key}"
        if len(self._tokens) > 1024:  # endpoints span few origins; never grow without bound
            self._tokens.clear()
        self._tokens[audience] = (value, now + lifetime / 2)
        return value

    def _plaintext(self, wake: Wake) -> bytes:
        body = {"c": wake.conversation_hint, "n": wake.counter, "k": wake.kind.value}
        return json.dumps(body, separators=(",", ":")).encode()

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        endpoint = registration.token
        fingerprint = token_fingerprint(endpoint)
        scheme = urlsplit(endpoint).scheme
        if scheme != "https" and not (scheme == "http" and self._settings.allow_http_endpoints):
            log.info("WebPush: subscription %s has an unusable endpoint", fingerprint)
            return PushResult.drop_registration("endpoint is not https")
        try:
            audience = endpoint_origin(endpoint)
            body = encrypt(
                self._plaintext(wake), registration.p256dh, registration.auth, pad_to=PADDED_SIZE
            )
        except ValueError as exc:
            log.info("WebPush: subscription %s is malformed: %s", fingerprint, exc)
            return PushResult.drop_registration(f"malformed subscription: {exc}")
        headers = {
            "authorization": self.vapid_authorization(audience),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
            "ttl": str(self._settings.ttl_seconds),
            "urgency": "high" if wake.priority is Priority.HIGH else "normal",
        }
        if wake.conversation_hint:
            headers["topic"] = topic_for(wake.conversation_hint)
        try:
            response = await self._client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_failure(log, "WebPush", fingerprint, exc)
        return _map(response, fingerprint)

    async def aclose(self) -> None:
        await self._client.aclose()


def _map(response: httpx.Response, fingerprint: str) -> PushResult:
    status = response.status_code
    if status in _DELIVERED:
        return PushResult.delivered()
    if status in (404, 410):
        log.info("WebPush: subscription %s is gone (%s)", fingerprint, status)
        return PushResult.drop_registration(str(status))
    if status == 429 or status >= 500:
        after = parse_retry_after(response.headers.get("retry-after"))
        log.warning("WebPush: %s for %s; will retry", status, fingerprint)
        return PushResult.retry(str(status), after)
    log.error("WebPush: %s for %s; not retried", status, fingerprint)
    return PushResult.failed_permanently(str(status))
