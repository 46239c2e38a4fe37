"""The FCM provider against the stand-in: OAuth2 JWT-bearer grant, token cache, v1 body,
status mapping."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.standins.fcm import GRANT, SCOPE

from tidings.server.push.fcm import FcmProvider, ServiceAccount
from tidings.server.push.provider import (
    Outcome,
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
)
from tidings.server.push.settings import FcmSettings

from .conftest import CLIENT_EMAIL, FakeClock, Fcm, pem

TOKEN = "fcm-registration-token:APA91bH_example"
REG = PushRegistration(Platform.FCM, TOKEN, device_id="dev-2")
ALERT = Wake(WakeKind.ALERT, Priority.HIGH, "conv-1", 2)
SILENT = Wake(WakeKind.SILENT, Priority.NORMAL, "conv-1", 3)


async def test_alert_is_a_data_only_high_priority_message(fcm: Fcm) -> None:
    assert await fcm.provider.send(REG, ALERT) == PushResult.delivered()
    [grant] = fcm.standin.token_requests
    assert grant["grant_type"] == GRANT
    assert fcm.standin.token_problems == []
    [send] = fcm.standin.sends
    assert send.problems == []
    assert send.body == {
        "message": {
            "token": TOKEN,
            "data": {"c": "conv-1", "n": "2", "k": "alert"},
            "android": {"priority": "high", "collapse_key": "conv-1", "ttl": "3600s"},
        }
    }


async def test_silent_is_normal_priority(fcm: Fcm) -> None:
    assert (await fcm.provider.send(REG, SILENT)).outcome is Outcome.DELIVERED
    [send] = fcm.standin.sends
    assert send.body is not None
    assert send.body["message"]["android"]["priority"] == "normal"
    assert send.body["message"]["data"] == {"c": "conv-1", "n": "3", "k": "silent"}


async def test_assertion_claims(fcm: Fcm, clock: FakeClock) -> None:
    import jwt

    await fcm.provider.send(REG, ALERT)
    assertion = fcm.standin.token_requests[0]["assertion"]
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "typ": "JWT", "kid": "0123abcd"}
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims == {
        "iss": CLIENT_EMAIL,
        "scope": SCOPE,
        "aud": fcm.standin.token_uri,
        "iat": int(clock.now),
        "exp": int(clock.now) + 3600,
    }


async def test_access_token_is_cached_until_shortly_before_expiry(
    fcm: Fcm, clock: FakeClock
) -> None:
    for _ in range(3):
        assert (await fcm.provider.send(REG, ALERT)).outcome is Outcome.DELIVERED
    assert len(fcm.standin.token_requests) == 1
    clock.advance(3600 - 300 - 1)  # inside the 300 s margin's edge: still cached
    await fcm.provider.send(REG, ALERT)
    assert len(fcm.standin.token_requests) == 1
    clock.advance(1)  # 300 s before expiry: replaced
    await fcm.provider.send(REG, ALERT)
    assert len(fcm.standin.token_requests) == 2
    assert all(s.problems == [] for s in fcm.standin.sends)


async def test_concurrent_sends_share_one_token_request(fcm: Fcm) -> None:
    import asyncio

    results = await asyncio.gather(*(fcm.provider.send(REG, ALERT) for _ in range(8)))
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert len(fcm.standin.token_requests) == 1


async def test_a_revoked_token_is_replaced_after_a_401(fcm: Fcm) -> None:
    await fcm.provider.send(REG, ALERT)
    fcm.standin.issued.clear()  # the token endpoint revoked every token
    result = await fcm.provider.send(REG, ALERT)
    assert result.outcome is Outcome.RETRY
    assert (await fcm.provider.send(REG, ALERT)).outcome is Outcome.DELIVERED
    assert len(fcm.standin.token_requests) == 2


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "expected"),
    [
        (404, "UNREGISTERED", None, PushResult.drop_registration("UNREGISTERED")),
        (404, "", None, PushResult.drop_registration("NOT_FOUND")),
        (400, "UNREGISTERED", None, PushResult.drop_registration("UNREGISTERED")),
        (403, "SENDER_ID_MISMATCH", None, PushResult.drop_registration("SENDER_ID_MISMATCH")),
        (429, "QUOTA_EXCEEDED", "42", PushResult.retry("QUOTA_EXCEEDED", 42.0)),
        (429, "QUOTA_EXCEEDED", None, PushResult.retry("QUOTA_EXCEEDED")),
        (500, "INTERNAL", None, PushResult.retry("INTERNAL")),
        (503, "UNAVAILABLE", "5", PushResult.retry("UNAVAILABLE", 5.0)),
        (400, "INVALID_ARGUMENT", None, PushResult.failed_permanently("400 INVALID_ARGUMENT")),
        (403, "", None, PushResult.failed_permanently("403 PERMISSION_DENIED")),
    ],
)
async def test_status_mapping(
    fcm: Fcm, status: int, code: str, retry_after: str | None, expected: PushResult
) -> None:
    fcm.standin.fail(TOKEN, status, code, retry_after)
    assert await fcm.provider.send(REG, ALERT) == expected


async def test_token_endpoint_outage_is_a_retry(fcm: Fcm) -> None:
    fcm.standin.token_endpoint_status = 503
    assert (await fcm.provider.send(REG, ALERT)).outcome is Outcome.RETRY
    assert fcm.standin.sends == []
    fcm.standin.token_endpoint_status = None
    assert (await fcm.provider.send(REG, ALERT)).outcome is Outcome.DELIVERED


async def test_a_wrong_service_account_key_fails_permanently(fcm: Fcm, tmp_path, clock) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = dict(fcm.service_account, private_key=pem(other).decode())
    path = tmp_path / "other.json"
    path.write_text(json.dumps(account))
    provider = FcmProvider(
        FcmSettings(path, base_url=fcm.settings.base_url, token_uri=fcm.standin.token_uri),
        clock=clock,
    )
    try:
        result = await provider.send(REG, ALERT)
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.FAILED_PERMANENTLY
    assert "invalid_grant" in result.reason
    assert any("Signature" in p for p in fcm.standin.token_problems)


async def test_unreachable_fcm_is_a_retry(fcm: Fcm, unused_tcp_port: int, clock) -> None:
    provider = FcmProvider(
        FcmSettings(
            fcm.settings.service_account_path,
            base_url=f"http://127.0.0.1:{unused_tcp_port}",
            token_uri=fcm.standin.token_uri,
        ),
        clock=clock,
    )
    try:
        result = await provider.send(REG, ALERT)
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.RETRY


def test_service_account_needs_every_field(fcm: Fcm) -> None:
    account = dict(fcm.service_account)
    del account["project_id"]
    with pytest.raises(ValueError, match="project_id"):
        ServiceAccount.from_json(json.dumps(account))
    assert "PRIVATE" not in repr(ServiceAccount.from_json(json.dumps(fcm.service_account)))
