"""Fixtures: each provider wired to its stand-in on a free 127.0.0.1 port, and a fake clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.standins.apns import ApnsStandIn
from tests.standins.asgi import make_tls_files, serve
from tests.standins.fcm import FcmStandIn
from tests.standins.webpush import WebPushStandIn

from tidings.server.push.apns import ApnsProvider
from tidings.server.push.fcm import FcmProvider
from tidings.server.push.settings import ApnsSettings, FcmSettings, WebPushSettings
from tidings.server.push.webpush import WebPushProvider

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
BUNDLE_ID = "org.tidings.app"
DEVICE_TOKEN = "a1" * 32
PROJECT_ID = "tidings-test"
CLIENT_EMAIL = "push@tidings-test.iam.gserviceaccount.com"


class FakeClock:
    """A settable wall clock (seconds since the epoch) shared by a provider and its stand-in."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Apns:
    provider: ApnsProvider
    standin: ApnsStandIn
    settings: ApnsSettings


@pytest.fixture
async def apns(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Apns]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / f"AuthKey_{KEY_ID}.p8"
    key_path.write_bytes(pem(key))
    tls = make_tls_files(tmp_path)
    standin = ApnsStandIn(key.public_key(), KEY_ID, TEAM_ID, BUNDLE_ID, clock=clock)
    async with serve(standin, tls=tls) as url:
        settings = ApnsSettings(
            key_path=key_path,
            key_id=KEY_ID,
            team_id=TEAM_ID,
            topic=BUNDLE_ID,
            base_url=url,
            ca_file=tls.ca_file,
        )
        provider = ApnsProvider(settings, clock=clock)
        try:
            yield Apns(provider, standin, settings)
        finally:
            await provider.aclose()


@dataclass
class Fcm:
    provider: FcmProvider
    standin: FcmStandIn
    settings: FcmSettings
    service_account: dict[str, str]


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": "0123abcd",
        "private_key": pem(key).decode(),
        "client_email": CLIENT_EMAIL,
        # never contacted: the settings override it with the stand-in's token endpoint
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
async def fcm(tmp_path: Path, clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[Fcm]:
    account = service_account_json(rsa_key)
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    standin = FcmStandIn(rsa_key.public_key(), CLIENT_EMAIL, PROJECT_ID, clock=clock)
    async with serve(standin) as url:
        standin.base_url = url
        settings = FcmSettings(service_account_path=path, base_url=url, token_uri=standin.token_uri)
        provider = FcmProvider(settings, clock=clock)
        try:
            yield Fcm(provider, standin, settings, account)
        finally:
            await provider.aclose()


@dataclass
class WebPush:
    provider: WebPushProvider
    standin: WebPushStandIn
    settings: WebPushSettings


@pytest.fixture
async def webpush(tmp_path: Path, clock: FakeClock) -> AsyncIterator[WebPush]:
    standin = WebPushStandIn(clock=clock)
    async with serve(standin) as url:
        standin.base_url = url
        settings = WebPushSettings(
            data_dir=tmp_path, contact="mailto:ops@tidings.example", allow_http_endpoints=True
        )
        provider = WebPushProvider(settings, clock=clock)
        standin.expected_vapid_key = provider.public_key
        try:
            yield WebPush(provider, standin, settings)
        finally:
            await provider.aclose()
