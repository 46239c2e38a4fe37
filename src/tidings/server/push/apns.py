"""APNs provider: HTTP/2 with token-based authentication (an ES256 provider JWT).

Guarantees, first:

* A payload holds only a fixed generic alert ("Tidings" / "New message", which the app's
  notification service extension replaces after decrypting), the opaque conversation hint
  ``c`` and the counter ``n``. Never plaintext, sender names or conversation titles.
* :meth:`ApnsProvider.send` never raises for APNs or network errors; it returns a
  :class:`~tidings.server.push.provider.PushResult`.
* The provider JWT is built once and reused until it is ``token_refresh_seconds`` old (50
  minutes by default; APNs refuses tokens older than an hour), or until APNs calls it expired.

Status mapping: 200 delivered; 410 and 400 ``BadDeviceToken``/``DeviceTokenNotForTopic`` drop
the registration; 429/500/503 retry (honouring ``Retry-After``); 403 ``ExpiredProviderToken``
refreshes the JWT and retries; any other 4xx is logged with APNs's ``reason`` and not retried.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.server.push.jws import read_ec_private_key, sign_es256
from tidings.server.push.provider import (
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
    parse_retry_after,
    token_fingerprint,
)
from tidings.server.push.settings import ApnsSettings
from tidings.server.push.transport import make_client, transport_failure

log = logging.getLogger(__name__)

#: the generic alert shown until the app has decrypted the message itself
ALERT_TITLE = "Tidings"
ALERT_BODY = "New message"

_DROP_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
_RETRY_STATUSES = frozenset({429, 500, 503})
_STALE_TOKEN_REASONS = frozenset({"ExpiredProviderToken"})
#: device tokens are hex (32 bytes today); anything else could not be a token and must not
#: reach the URL path
_TOKEN_SHAPE = re.compile(r"[0-9a-fA-F]{16,200}")


def apns_payload(wake: Wake) -> dict[str, Any]:
    """The JSON body for ``wake``: generic alert or ``content-available`` background push."""
    aps: dict[str, Any]
    if wake.kind is WakeKind.ALERT:
        aps = {
            "alert": {"title": ALERT_TITLE, "body": ALERT_BODY},
            "mutable-content": 1,
            "sound": "default",
        }
    else:
        aps = {"content-available": 1}
    return {"aps": aps, "c": wake.conversation_hint, "n": wake.counter}


class ApnsProvider:
    """Sends wakes to APNs. One instance per server; safe for concurrent use."""

    platform = Platform.APNS

    def __init__(
        self,
        settings: ApnsSettings,
        *,
        clock: Callable[[], float] = time.time,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._key = signing_key or read_ec_private_key(settings.key_path)
        self._jwt: str | None = None
        self._jwt_issued_at = 0.0
        self._client = make_client(
            http2=True,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            ca_file=settings.ca_file,
            transport=transport,
        )

    def provider_token(self) -> str:
        """The cached provider JWT, replaced once it is ``token_refresh_seconds`` old."""
        now = self._clock()
        age = now - self._jwt_issued_at
        if self._jwt is None or age >= self._settings.token_refresh_seconds or age < 0:
            issued = int(now)
            self._jwt = sign_es256(
                self._key,
                {"iss": self._settings.team_id, "iat": issued},
                headers={"kid": self._settings.key_id},
            )
            self._jwt_issued_at = float(issued)
        return self._jwt

    def _headers(self, registration: PushRegistration, wake: Wake) -> dict[str, str]:
        silent = wake.kind is WakeKind.SILENT
        # Apple requires priority 5 for background pushes; an alert may be sent at either.
        high = not silent and wake.priority is Priority.HIGH
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": registration.topic or self._settings.topic,
            "apns-push-type": "background" if silent else "alert",
            "apns-priority": "10" if high else "5",
            "apns-expiration": str(int(self._clock()) + self._settings.expiration_seconds),
        }
        if wake.conversation_hint:
            headers["apns-collapse-id"] = wake.conversation_hint
        return headers

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        fingerprint = token_fingerprint(registration.token)
        if not _TOKEN_SHAPE.fullmatch(registration.token):
            log.info("APNs: registration %s is not a device token", fingerprint)
            return PushResult.drop_registration("BadDeviceToken")
        url = f"{self._settings.base_url.rstrip('/')}/3/device/{registration.token}"
        body = json.dumps(apns_payload(wake), separators=(",", ":")).encode()
        try:
            response = await self._client.post(
                url, content=body, headers=self._headers(registration, wake)
            )
        except httpx.HTTPError as exc:
            return transport_failure(log, "APNs push", fingerprint, exc)
        return self._map(response, fingerprint)

    def _map(self, response: httpx.Response, fingerprint: str) -> PushResult:
        status = response.status_code
        if status == 200:
            return PushResult.delivered()
        reason = _reason(response)
        if status == 410 or (status == 400 and reason in _DROP_REASONS):
            log.info("APNs: registration %s is invalid (%s %s)", fingerprint, status, reason)
            return PushResult.drop_registration(reason or str(status))
        if status in _RETRY_STATUSES:
            after = parse_retry_after(response.headers.get("retry-after"))
            log.warning("APNs: %s %s for %s; will retry", status, reason, fingerprint)
            return PushResult.retry(reason or str(status), after)
        if status == 403 and reason in _STALE_TOKEN_REASONS:
            log.warning("APNs: provider token refused (%s); refreshing it", reason)
            self._jwt = None
            return PushResult.retry(reason)
        log.error("APNs: %s %s for %s; not retried", status, reason or "(no reason)", fingerprint)
        return PushResult.failed_permanently(f"{status} {reason}".strip())

    async def aclose(self) -> None:
        await self._client.aclose()


def _reason(response: httpx.Response) -> str:
    """APNs's ``reason`` from an error body (``{"reason": "BadDeviceToken"}``), or ''."""
    try:
        data = response.json()
    except ValueError:
        return ""
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else ""
