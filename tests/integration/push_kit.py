"""Push stand-ins for a real `tidings serve`: APNs (HTTP/2 + TLS, its own CA), FCM (a generated
service account) and WebPush (loopback allowed), all in the test's event loop, and the server
settings that point at them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.standins.apns import ApnsStandIn
from tests.standins.asgi import make_tls_files, serve
from tests.standins.fcm import FcmStandIn
from tests.standins.webpush import WebPushStandIn

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
BUNDLE_ID = "org.tidings.app"
PROJECT_ID = "tidings-test"
CLIENT_EMAIL = "push@tidings-test.iam.gserviceaccount.com"


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class PushServices:
    apns: ApnsStandIn
    fcm: FcmStandIn
    webpush: WebPushStandIn
    env: dict[str, str] = field(default_factory=dict)

    def bodies(self) -> list[bytes]:
        """Every push body the services received, as the service (and, for WebPush, the
        device after decrypting) sees it."""
        out = [json.dumps(r.payload).encode() for r in self.apns.requests]
        out += [json.dumps(r.body).encode() for r in self.fcm.sends]
        out += [r.plaintext or b"" for r in self.webpush.pushes]
        return out

    def count(self) -> int:
        return len(self.apns.requests) + len(self.fcm.sends) + len(self.webpush.pushes)

    def clear(self) -> None:
        self.apns.requests.clear()
        self.fcm.sends.clear()
        self.webpush.pushes.clear()

    async def settle(self, quiet: float = 0.8, within: float = 20.0) -> None:
        """Wait until no push arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + within
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    async def wait_for(self, check: Callable[[], bool], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for pushes")
            await asyncio.sleep(0.05)


def webpush_kind(plaintext: bytes | None) -> dict[str, Any]:
    return dict(json.loads(plaintext)) if plaintext else {}


@contextlib.asynccontextmanager
async def push_services(directory: Path) -> AsyncIterator[PushServices]:
    apns_key = ec.generate_private_key(ec.SECP256R1())
    key_path = directory / f"AuthKey_{KEY_ID}.p8"
    key_path.write_bytes(_pem(apns_key))
    tls = make_tls_files(directory)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account_path = directory / "service-account.json"
    account_path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT_ID,
                "private_key_id": "0123abcd",
                "private_key": _pem(rsa_key).decode(),
                "client_email": CLIENT_EMAIL,
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    apns = ApnsStandIn(apns_key.public_key(), KEY_ID, TEAM_ID, BUNDLE_ID)
    fcm = FcmStandIn(rsa_key.public_key(), CLIENT_EMAIL, PROJECT_ID)
    webpush = WebPushStandIn()
    async with (
        serve(apns, tls=tls) as apns_url,
        serve(fcm) as fcm_url,
        serve(webpush) as webpush_url,
    ):
        fcm.base_url = fcm_url
        webpush.base_url = webpush_url
        env = {
            "TIDINGS_APNS_KEY_PATH": str(key_path),
            "TIDINGS_APNS_KEY_ID": KEY_ID,
            "TIDINGS_APNS_TEAM_ID": TEAM_ID,
            "TIDINGS_APNS_TOPIC": BUNDLE_ID,
            "TIDINGS_APNS_BASE_URL": apns_url,
            "TIDINGS_APNS_CA_FILE": str(tls.ca_file),
            "TIDINGS_FCM_SERVICE_ACCOUNT": str(account_path),
            "TIDINGS_FCM_BASE_URL": fcm_url,
            "TIDINGS_FCM_TOKEN_URI": fcm.token_uri,
            "TIDINGS_WEBPUSH_CONTACT": "mailto:ops@tidings.example",
            "TIDINGS_WEBPUSH_ALLOW_HTTP": "true",
            "TIDINGS_PUSH_ALLOW_PRIVATE_ENDPOINTS": "true",
            "TIDINGS_PUSH_RETRY_BASE": "0.2",
        }
        yield PushServices(apns, fcm, webpush, env)
