"""An APNs stand-in: HTTP/2 over TLS, token-based auth, checking what api.push.apple.com checks.

Every request is recorded with the problems found in it (``Recorded.problems``; a correct client
leaves it empty). A request that breaks a rule gets the error APNs would send (400/403/405 with
its ``reason``). ``fail(token, status, reason, retry_after)`` makes later pushes to ``token``
fail that way, for status-mapping tests.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from tests.standins.asgi import Request, Response

_PATH = re.compile(r"/3/device/([0-9a-fA-F]{16,200})")
_PUSH_TYPES = {"alert", "background"}


@dataclasses.dataclass
class Recorded:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any] | None
    http_version: str
    jwt_claims: dict[str, Any] | None
    problems: list[str]
    status: int = 200


@dataclasses.dataclass
class ApnsStandIn:
    public_key: ec.EllipticCurvePublicKey
    key_id: str
    team_id: str
    topic: str
    clock: Callable[[], float] = time.time
    requests: list[Recorded] = dataclasses.field(default_factory=list)
    failures: dict[str, tuple[int, str, str | None]] = dataclasses.field(default_factory=dict)

    def fail(self, token: str, status: int, reason: str, retry_after: str | None = None) -> None:
        self.failures[token] = (status, reason, retry_after)

    async def __call__(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path)
        record = Recorded(
            match.group(1) if match else "", request.headers, None, request.http_version, None, []
        )
        self.requests.append(record)
        error = self._check(request, record)
        if error is None and record.token in self.failures:
            status, reason, retry_after = self.failures[record.token]
            error = (status, reason)
            if retry_after is not None:
                record.status = status
                return Response.json(status, {"reason": reason}, **{"retry-after": retry_after})
        if error is not None:
            record.status = error[0]
            body: dict[str, Any] = {"reason": error[1]}
            if error[0] == 410:
                body["timestamp"] = int(self.clock() * 1000)
            return Response.json(error[0], body)
        return Response(200, headers={"apns-id": str(uuid.uuid4()).upper()})

    def _check(self, request: Request, record: Recorded) -> tuple[int, str] | None:
        """Validate like APNs; note every problem, answer with the first."""
        errors: list[tuple[int, str]] = []

        def problem(status: int, reason: str, detail: str) -> None:
            errors.append((status, reason))
            record.problems.append(f"{reason}: {detail}")

        h = request.headers
        if request.http_version != "2":
            problem(400, "BadHttpVersion", request.http_version)
        if request.method != "POST":
            problem(405, "MethodNotAllowed", request.method)
        if not record.token:
            problem(404, "BadPath", request.path)
        self._check_jwt(h.get("authorization", ""), record, problem)
        if h.get("apns-topic") != self.topic:
            problem(400, "DeviceTokenNotForTopic", f"topic {h.get('apns-topic')!r}")
        push_type = h.get("apns-push-type")
        if push_type not in _PUSH_TYPES:
            problem(400, "InvalidPushType", str(push_type))
        priority = h.get("apns-priority")
        if priority not in ("10", "5") or (push_type == "background" and priority != "5"):
            problem(400, "BadPriority", f"{priority} for {push_type}")
        if not h.get("apns-expiration", "").isdigit():
            problem(400, "BadExpirationDate", h.get("apns-expiration", "(missing)"))
        collapse = h.get("apns-collapse-id")
        if collapse is not None and len(collapse.encode()) > 64:
            problem(400, "BadCollapseId", collapse)
        if len(request.body) > 4096:
            problem(413, "PayloadTooLarge", str(len(request.body)))
        try:
            payload = request.json()
            aps = payload["aps"]
        except (ValueError, KeyError, TypeError):
            problem(400, "PayloadEmpty", "no JSON aps dictionary")
        else:
            record.payload = payload
            if push_type == "background" and (aps != {"content-available": 1}):
                problem(400, "BadPayload", "background pushes carry only content-available")
            if push_type == "alert" and "alert" not in aps:
                problem(400, "BadPayload", "alert push without an alert")
        return errors[0] if errors else None

    def _check_jwt(self, authorization: str, record: Recorded, problem: Any) -> None:
        if not authorization.startswith("bearer "):
            problem(403, "MissingProviderToken", authorization[:20])
            return
        token = authorization.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, self.public_key, algorithms=["ES256"], options={"verify_iat": False}
            )
        except jwt.PyJWTError as exc:
            problem(403, "InvalidProviderToken", repr(exc))
            return
        record.jwt_claims = claims
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            problem(403, "InvalidProviderToken", f"kid/iss {header.get('kid')}/{claims.get('iss')}")
        age = self.clock() - float(claims.get("iat", 0))
        if not -60 <= age < 3600:
            problem(403, "ExpiredProviderToken", f"token is {age:.0f} s old")
