"""An FCM stand-in (plain HTTP): a Google OAuth2 token endpoint and the HTTP v1 send API.

``POST /token`` verifies the JWT-bearer grant: the RS256 assertion is checked against the
service account's public key, and ``iss``, ``scope``, ``aud`` (this endpoint's URL), ``iat``
and ``exp`` (at most an hour) as Google does; it issues an access token with ``expires_in``.
``POST /v1/projects/<project>/messages:send`` checks the bearer token (issued here, unexpired
on ``clock``) and the v1 body: a token, a data-only message whose values are all strings,
``android.priority`` and ``android.ttl`` in their formats. Problems are recorded per request;
``fail(token, status, ...)`` answers later sends to ``token`` with that error.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.standins.asgi import Request, Response

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fcm_error(status: int, error_code: str, message: str = "") -> dict[str, Any]:
    """An error body shaped like the v1 API's."""
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
        if error_code
        else []
    )
    return {
        "error": {
            "code": status,
            "message": message or error_code,
            "status": _STATUS.get(status, "UNKNOWN"),
            "details": details,
        }
    }


@dataclasses.dataclass
class SendRecord:
    headers: dict[str, str]
    body: dict[str, Any] | None
    problems: list[str]
    status: int = 200


@dataclasses.dataclass
class FcmStandIn:
    public_key: rsa.RSAPublicKey
    client_email: str
    project_id: str
    clock: Callable[[], float] = time.time
    token_lifetime: int = 3600
    base_url: str = ""  # set once serving; the token endpoint's URL is the JWT audience
    token_requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    token_problems: list[str] = dataclasses.field(default_factory=list)
    sends: list[SendRecord] = dataclasses.field(default_factory=list)
    issued: dict[str, float] = dataclasses.field(default_factory=dict)
    failures: dict[str, tuple[int, str, str | None]] = dataclasses.field(default_factory=dict)
    token_endpoint_status: int | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def fail(
        self, token: str, status: int, error_code: str = "", retry_after: str | None = None
    ) -> None:
        self.failures[token] = (status, error_code, retry_after)

    async def __call__(self, request: Request) -> Response:
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        if request.method == "POST" and request.path == (
            f"/v1/projects/{self.project_id}/messages:send"
        ):
            return self._send(request)
        return Response.json(404, fcm_error(404, "", f"no route {request.method} {request.path}"))

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        self.token_requests.append(form)
        if self.token_endpoint_status is not None:
            return Response.json(self.token_endpoint_status, {"error": "backend_error"})
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            self.token_problems.append(f"content-type {request.headers.get('content-type')}")
        if form.get("grant_type") != GRANT:
            self.token_problems.append(f"grant_type {form.get('grant_type')}")
            return Response.json(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["iss", "aud", "iat", "exp"],
                },
            )
        except jwt.PyJWTError as exc:
            self.token_problems.append(f"assertion: {exc!r}")
            return Response.json(400, {"error": "invalid_grant", "error_description": str(exc)})
        now = self.clock()
        if claims["iss"] != self.client_email or claims.get("scope") != SCOPE:
            self.token_problems.append(f"iss/scope {claims['iss']}/{claims.get('scope')}")
            return Response.json(400, {"error": "invalid_scope"})
        if not (claims["iat"] - 60 <= now < claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
            self.token_problems.append(f"iat/exp {claims['iat']}/{claims['exp']} at {now}")
            return Response.json(400, {"error": "invalid_grant", "error_description": "bad time"})
        token = "ya29." + secrets.token_urlsafe(24)
        self.issued[token] = now + self.token_lifetime
        return Response.json(
            200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _send(self, request: Request) -> Response:
        record = SendRecord(request.headers, None, [])
        self.sends.append(record)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        expiry = self.issued.get(bearer)
        if expiry is None or self.clock() >= expiry:
            record.status = 401
            record.problems.append("missing, unknown or expired access token")
            return Response.json(401, fcm_error(401, "THIRD_PARTY_AUTH_ERROR"))
        try:
            body = request.json()
            message = body["message"]
        except (ValueError, KeyError, TypeError):
            record.status = 400
            record.problems.append("no message")
            return Response.json(400, fcm_error(400, "INVALID_ARGUMENT"))
        record.body = body
        self._check_message(message, record.problems)
        if record.problems:
            record.status = 400
            return Response.json(
                400, fcm_error(400, "INVALID_ARGUMENT", "; ".join(record.problems))
            )
        token = message["token"]
        if token in self.failures:
            status, code, retry_after = self.failures[token]
            record.status = status
            headers = {"retry-after": retry_after} if retry_after else {}
            return Response.json(status, fcm_error(status, code), **headers)
        return Response.json(
            200, {"name": f"projects/{self.project_id}/messages/0:{secrets.token_hex(8)}"}
        )

    @staticmethod
    def _check_message(message: dict[str, Any], problems: list[str]) -> None:
        if not isinstance(message.get("token"), str) or not message["token"]:
            problems.append("message.token")
        if "notification" in message:
            problems.append("a notification block (must be data-only)")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            problems.append("data values must all be strings")
        android = message.get("android", {})
        if android.get("priority") not in ("high", "normal"):
            problems.append(f"android.priority {android.get('priority')!r}")
        if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", str(android["ttl"])):
            problems.append(f"android.ttl {android['ttl']!r}")
        unknown = set(message) - {"token", "data", "android", "apns", "webpush", "fcm_options"}
        if unknown:
            problems.append(f"unknown fields {sorted(unknown)}")
