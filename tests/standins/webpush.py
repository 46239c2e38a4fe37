"""A WebPush / UnifiedPush endpoint stand-in (plain HTTP): checks VAPID and decrypts.

Subscriptions are made like a browser or a UnifiedPush distributor makes them
(:meth:`WebPushStandIn.subscribe`: a P-256 key pair and a 16-byte auth secret); the stand-in
keeps the private half. Each push is checked as RFC 8030/8291/8292 require: ``Authorization:
vapid t=<ES256 JWT>, k=<key>`` with the signature verified against ``k``, ``aud`` equal to
this origin, ``exp`` at most 24 hours ahead and a mailto:/https: ``sub``; ``TTL``, ``Urgency``,
``Topic`` and ``Content-Encoding: aes128gcm``. The body is decrypted with the independent
``http_ece`` implementation and the plaintext recorded.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.standins.asgi import Request, Response


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclasses.dataclass
class Subscription:
    endpoint: str
    p256dh: str
    auth: str
    private_key: ec.EllipticCurvePrivateKey = dataclasses.field(repr=False)


@dataclasses.dataclass
class PushRecord:
    subscription_id: str
    headers: dict[str, str]
    plaintext: bytes | None
    vapid_claims: dict[str, Any] | None
    vapid_key: str
    problems: list[str]
    status: int = 201


@dataclasses.dataclass
class WebPushStandIn:
    clock: Callable[[], float] = time.time
    base_url: str = ""  # set once serving
    expected_vapid_key: str | None = None
    subscriptions: dict[str, Subscription] = dataclasses.field(default_factory=dict)
    pushes: list[PushRecord] = dataclasses.field(default_factory=list)
    failures: dict[str, tuple[int, str | None]] = dataclasses.field(default_factory=dict)

    def subscribe(self) -> Subscription:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        sub_id = secrets.token_urlsafe(12)
        sub = Subscription(
            f"{self.base_url}/push/{sub_id}", _b64(public), _b64(secrets.token_bytes(16)), key
        )
        self.subscriptions[sub_id] = sub
        return sub

    def fail(self, sub: Subscription, status: int, retry_after: str | None = None) -> None:
        self.failures[sub.endpoint.rsplit("/", 1)[1]] = (status, retry_after)

    async def __call__(self, request: Request) -> Response:
        sub_id = request.path.removeprefix("/push/")
        record = PushRecord(sub_id, request.headers, None, None, "", [])
        self.pushes.append(record)
        sub = self.subscriptions.get(sub_id) if request.path.startswith("/push/") else None
        if request.method != "POST" or sub is None:
            record.status = 404
            return Response(404)
        if sub_id in self.failures:
            status, retry_after = self.failures[sub_id]
            record.status = status
            return Response(status, headers={"retry-after": retry_after} if retry_after else {})
        self._check_vapid(request.headers.get("authorization", ""), record)
        self._check_headers(request.headers, record.problems)
        if record.problems:
            record.status = 401 if record.vapid_claims is None else 400
            return Response(record.status, "; ".join(record.problems).encode())
        try:
            record.plaintext = http_ece.decrypt(
                request.body,
                private_key=sub.private_key,
                auth_secret=_unb64(sub.auth),
                version="aes128gcm",
            )
        except Exception as exc:
            record.problems.append(f"decryption failed: {exc!r}")
            record.status = 400
            return Response(400)
        return Response(
            201, headers={"location": f"{self.base_url}/message/{secrets.token_hex(8)}"}
        )

    def _check_vapid(self, authorization: str, record: PushRecord) -> None:
        match = re.fullmatch(r"vapid t=([\w.-]+), ?k=([\w-]+)", authorization)
        if not match:
            record.problems.append(f"authorization is not 'vapid t=..., k=...': {authorization!r}")
            return
        token, key_text = match.groups()
        record.vapid_key = key_text
        if self.expected_vapid_key is not None and key_text != self.expected_vapid_key:
            record.problems.append("k is not the application server key")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(key_text))
            claims = jwt.decode(
                token,
                public,
                algorithms=["ES256"],
                audience=self.base_url,
                options={"verify_exp": False, "require": ["aud", "exp", "sub"]},
            )
        except (ValueError, jwt.PyJWTError) as exc:
            record.problems.append(f"VAPID JWT: {exc!r}")
            return
        record.vapid_claims = claims
        remaining = claims["exp"] - self.clock()
        if not 0 < remaining <= 24 * 3600:
            record.problems.append(f"exp is {remaining:.0f} s ahead (must be 0 < exp <= 24 h)")
        if not str(claims["sub"]).startswith(("mailto:", "https://")):
            record.problems.append(f"sub {claims['sub']!r}")

    @staticmethod
    def _check_headers(headers: dict[str, str], problems: list[str]) -> None:
        if headers.get("content-encoding") != "aes128gcm":
            problems.append(f"content-encoding {headers.get('content-encoding')!r}")
        if not headers.get("ttl", "").isdigit():
            problems.append(f"ttl {headers.get('ttl')!r}")
        if headers.get("urgency", "normal") not in ("very-low", "low", "normal", "high"):
            problems.append(f"urgency {headers.get('urgency')!r}")
        topic = headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            problems.append(f"topic {topic!r}")
