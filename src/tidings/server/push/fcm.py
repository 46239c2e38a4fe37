"""FCM provider: the HTTP v1 API, authorised by a service account's OAuth2 JWT-bearer grant.

Guarantees, first:

* Messages are data-only: ``data`` holds the opaque conversation hint ``c``, the counter ``n``
  and the wake kind ``k``. No ``notification`` block, so FCM never sees or shows a title or
  body; the app builds its notification after decrypting. Never plaintext or sender names.
* :meth:`FcmProvider.send` never raises for FCM, token-endpoint or network errors.
* One access token is fetched at a time (a lock), cached and replaced
  ``token_refresh_margin`` seconds before it expires, or when FCM answers 401.

Status mapping: 200 delivered; 404 or ``UNREGISTERED`` (and 403 ``SENDER_ID_MISMATCH``) drop the
registration; 429 and 5xx retry (honouring ``Retry-After``); 401 refreshes the access token and
retries; 400 ``INVALID_ARGUMENT`` and anything else fail permanently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from tidings.server.push.jws import load_rsa_private_key, sign_rs256
from tidings.server.push.provider import (
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    parse_retry_after,
    token_fingerprint,
)
from tidings.server.push.settings import FcmSettings
from tidings.server.push.transport import make_client, transport_failure

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: lifetime asked for in the assertion; Google accepts at most one hour
_ASSERTION_LIFETIME = 3600


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class ServiceAccount:
    """The fields of a Google service-account JSON key that the v1 API needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    token_uri: str
    project_id: str
    private_key_id: str = ""

    @classmethod
    def from_json(cls, text: str | bytes) -> ServiceAccount:
        data = json.loads(text)
        missing = [
            f for f in ("client_email", "private_key", "token_uri", "project_id") if not data.get(f)
        ]
        if missing:
            raise ValueError(f"service account JSON lacks {', '.join(missing)}")
        return cls(
            client_email=data["client_email"],
            private_key=load_rsa_private_key(data["private_key"].encode()),
            token_uri=data["token_uri"],
            project_id=data["project_id"],
            private_key_id=data.get("private_key_id", ""),
        )

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        return cls.from_json(path.read_bytes())

    def __repr__(self) -> str:
        return f"ServiceAccount({self.client_email!r}, project={self.project_id!r})"


class _TokenUnavailable(Exception):
    def __init__(self, result: PushResult) -> None:
        super().__init__(result.reason)
        self.result = result


class FcmProvider:
    """Sends wakes through FCM. One instance per server; safe for concurrent use."""

    platform = Platform.FCM

    def __init__(
        self,
        settings: FcmSettings,
        *,
        clock: Callable[[], float] = time.time,
        account: ServiceAccount | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._account = account or ServiceAccount.from_file(settings.service_account_path)
        self._token_uri = settings.token_uri or self._account.token_uri
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self._client = make_client(
            http2=False,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            ca_file=settings.ca_file,
            transport=transport,
        )

    def message(self, registration: PushRegistration, wake: Wake) -> dict[str, Any]:
        """The v1 request body: a data-only message (every data value is a string)."""
        android: dict[str, Any] = {
            "priority": "high" if wake.priority is Priority.HIGH else "normal",
            "ttl": f"{self._settings.ttl_seconds}s",
        }
        if wake.conversation_hint:
            android["collapse_key"] = wake.conversation_hint
        data = {"c": wake.conversation_hint, "n": str(wake.counter), "k": wake.kind.value}
        return {"message": {"token": registration.token, "data": data, "android": android}}

    async def access_token(self) -> str:
        """A cached OAuth2 access token, fetched anew shortly before it expires."""
        async with self._token_lock:
            now = self._clock()
            if self._access_token is None or now >= self._expires_at:
                self._access_token, lifetime = await self._fetch_token(now)
                self._expires_at = now + max(0.0, lifetime - self._settings.token_refresh_margin)
            return self._access_token

    async def _fetch_token(self, now: float) -> tuple[str, float]:
        issued = int(now)
        claims = {
            "iss": self._account.client_email,
            "scope": FCM_SCOPE,
            "aud": self._token_uri,
            "iat": issued,
            "exp": issued + _ASSERTION_LIFETIME,
        }
        kid = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        assertion = sign_rs256(self._account.private_key, claims, headers=kid)
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        try:
            response = await self._client.post(self._token_uri, data=form)
        except httpx.HTTPError as exc:
            raise _TokenUnavailable(
                transport_failure(log, "FCM token request", "token_uri", exc)
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            after = parse_retry_after(response.headers.get("retry-after"))
            log.warning("FCM token endpoint answered %s; will retry", response.status_code)
            raise _TokenUnavailable(PushResult.retry(f"token {response.status_code}", after))
        try:
            data = response.json()
        except ValueError:
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        if response.status_code != 200 or not isinstance(token, str):
            error = data.get("error", "") if isinstance(data, dict) else ""
            log.error(
                "FCM token endpoint refused the service account: %s %s",
                response.status_code,
                error,
            )
            raise _TokenUnavailable(
                PushResult.failed_permanently(f"token {response.status_code} {error}".strip())
            )
        try:
            lifetime = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime

    async def send(self, registration: PushRegistration, wake: Wake) -> PushResult:
        fingerprint = token_fingerprint(registration.token)
        try:
            token = await self.access_token()
        except _TokenUnavailable as exc:
            return exc.result
        base = self._settings.base_url.rstrip("/")
        url = f"{base}/v1/projects/{self._account.project_id}/messages:send"
        try:
            response = await self._client.post(
                url,
                json=self.message(registration, wake),
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            return transport_failure(log, "FCM push", fingerprint, exc)
        return self._map(response, fingerprint, token)

    def _map(self, response: httpx.Response, fingerprint: str, token: str) -> PushResult:
        status = response.status_code
        if status == 200:
            return PushResult.delivered()
        status_name, error_code = _error(response)
        reason = error_code or status_name or str(status)
        if status == 404 or error_code == "UNREGISTERED" or error_code == "SENDER_ID_MISMATCH":
            log.info("FCM: registration %s is invalid (%s %s)", fingerprint, status, reason)
            return PushResult.drop_registration(reason)
        if status == 429 or status >= 500:
            after = parse_retry_after(response.headers.get("retry-after"))
            log.warning("FCM: %s %s for %s; will retry", status, reason, fingerprint)
            return PushResult.retry(reason, after)
        if status == 401:
            log.warning("FCM: access token refused (%s); fetching a new one", reason)
            if self._access_token == token:
                self._access_token = None
            return PushResult.retry(reason)
        log.error("FCM: %s %s for %s; not retried", status, reason, fingerprint)
        return PushResult.failed_permanently(f"{status} {reason}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _error(response: httpx.Response) -> tuple[str, str]:
    """``(status, errorCode)`` from a v1 error body, e.g. ``("NOT_FOUND", "UNREGISTERED")``."""
    try:
        error = response.json().get("error", {})
        status = error.get("status", "")
        codes = [
            d.get("errorCode", "")
            for d in error.get("details", [])
            if isinstance(d, dict) and d.get("errorCode")
        ]
    except (ValueError, AttributeError, TypeError):
        return "", ""
    return (status if isinstance(status, str) else ""), (str(codes[0]) if codes else "")
