"""The APNs provider against the HTTP/2 stand-in: headers, payloads, JWT, status mapping."""

from __future__ import annotations

import pytest

from tidings.server.push.apns import ApnsProvider
from tidings.server.push.provider import (
    Outcome,
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
)
from tidings.server.push.settings import ApnsSettings

from .conftest import BUNDLE_ID, DEVICE_TOKEN, KEY_ID, TEAM_ID, Apns, FakeClock

REG = PushRegistration(Platform.APNS, DEVICE_TOKEN, device_id="dev-1")
ALERT = Wake(WakeKind.ALERT, Priority.HIGH, "conv-7f3a", 3)
SILENT = Wake(WakeKind.SILENT, Priority.NORMAL, "conv-7f3a", 4)


async def test_alert_push_carries_every_header_and_only_the_generic_alert(
    apns: Apns, clock: FakeClock
) -> None:
    assert await apns.provider.send(REG, ALERT) == PushResult.delivered()
    [req] = apns.standin.requests
    assert req.problems == []
    assert req.http_version == "2"
    assert req.token == DEVICE_TOKEN
    assert req.headers["apns-topic"] == BUNDLE_ID
    assert req.headers["apns-push-type"] == "alert"
    assert req.headers["apns-priority"] == "10"
    assert req.headers["apns-collapse-id"] == "conv-7f3a"
    assert req.headers["apns-expiration"] == str(int(clock.now) + 3600)
    assert req.payload == {
        "aps": {
            "alert": {"title": "Tidings", "body": "New message"},
            "mutable-content": 1,
            "sound": "default",
        },
        "c": "conv-7f3a",
        "n": 3,
    }
    assert req.jwt_claims == {"iss": TEAM_ID, "iat": int(clock.now)}


async def test_silent_push_is_background_at_priority_5(apns: Apns) -> None:
    assert (await apns.provider.send(REG, SILENT)).outcome is Outcome.DELIVERED
    [req] = apns.standin.requests
    assert req.problems == []
    assert req.headers["apns-push-type"] == "background"
    assert req.headers["apns-priority"] == "5"
    assert req.headers["apns-topic"] == BUNDLE_ID
    assert req.payload == {"aps": {"content-available": 1}, "c": "conv-7f3a", "n": 4}


async def test_normal_priority_alert_and_no_hint(apns: Apns) -> None:
    await apns.provider.send(REG, Wake(WakeKind.ALERT, Priority.NORMAL))
    [req] = apns.standin.requests
    assert req.problems == []
    assert req.headers["apns-priority"] == "5"
    assert "apns-collapse-id" not in req.headers


async def test_registration_topic_overrides_the_default(apns: Apns) -> None:
    apns.standin.topic = "org.tidings.other"
    reg = PushRegistration(Platform.APNS, DEVICE_TOKEN, topic="org.tidings.other")
    assert (await apns.provider.send(reg, ALERT)).outcome is Outcome.DELIVERED


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "expected"),
    [
        (410, "Unregistered", None, PushResult.drop_registration("Unregistered")),
        (400, "BadDeviceToken", None, PushResult.drop_registration("BadDeviceToken")),
        (
            400,
            "DeviceTokenNotForTopic",
            None,
            PushResult.drop_registration("DeviceTokenNotForTopic"),
        ),
        (429, "TooManyRequests", None, PushResult.retry("TooManyRequests")),
        (429, "TooManyRequests", "7", PushResult.retry("TooManyRequests", 7.0)),
        (500, "InternalServerError", None, PushResult.retry("InternalServerError")),
        (503, "ServiceUnavailable", "30", PushResult.retry("ServiceUnavailable", 30.0)),
        (400, "BadCollapseId", None, PushResult.failed_permanently("400 BadCollapseId")),
        (400, "PayloadEmpty", None, PushResult.failed_permanently("400 PayloadEmpty")),
        (
            403,
            "InvalidProviderToken",
            None,
            PushResult.failed_permanently("403 InvalidProviderToken"),
        ),
        (
            403,
            "BadCertificateEnvironment",
            None,
            PushResult.failed_permanently("403 BadCertificateEnvironment"),
        ),
        (413, "PayloadTooLarge", None, PushResult.failed_permanently("413 PayloadTooLarge")),
    ],
)
async def test_status_mapping(
    apns: Apns, status: int, reason: str, retry_after: str | None, expected: PushResult
) -> None:
    apns.standin.fail(DEVICE_TOKEN, status, reason, retry_after)
    assert await apns.provider.send(REG, ALERT) == expected
    assert apns.standin.requests[0].status == status


async def test_provider_jwt_is_cached_and_refreshed_at_50_minutes(
    apns: Apns, clock: FakeClock
) -> None:
    first = apns.provider.provider_token()
    await apns.provider.send(REG, ALERT)
    clock.advance(49 * 60)
    await apns.provider.send(REG, ALERT)
    assert apns.provider.provider_token() == first
    clock.advance(60)  # 50 minutes old: replaced before APNs would refuse it
    await apns.provider.send(REG, ALERT)
    assert apns.provider.provider_token() != first
    issued = [r.jwt_claims["iat"] for r in apns.standin.requests if r.jwt_claims]
    assert issued[0] == issued[1] < issued[2] == int(clock.now)
    assert all(r.problems == [] for r in apns.standin.requests)


async def test_a_token_older_than_an_hour_is_refused_by_the_stand_in(
    apns: Apns, clock: FakeClock
) -> None:
    """The refresh matters: a provider that kept its token 61 minutes would be refused."""
    lazy = ApnsProvider(
        apns.settings, clock=lambda: clock.now - 61 * 60, signing_key=apns.provider._key
    )
    try:
        result = await lazy.send(REG, ALERT)
    finally:
        await lazy.aclose()
    assert result == PushResult.retry("ExpiredProviderToken")
    assert any("ExpiredProviderToken" in p for p in apns.standin.requests[0].problems)


async def test_expired_provider_token_answer_forces_a_new_jwt(apns: Apns) -> None:
    apns.standin.fail(DEVICE_TOKEN, 403, "ExpiredProviderToken")
    before = apns.provider.provider_token()
    assert (await apns.provider.send(REG, ALERT)).outcome is Outcome.RETRY
    apns.standin.failures.clear()
    assert (await apns.provider.send(REG, ALERT)).outcome is Outcome.DELIVERED
    assert apns.provider.provider_token() != before


async def test_a_malformed_token_is_dropped_without_a_request(apns: Apns) -> None:
    reg = PushRegistration(Platform.APNS, "../../3/device/x")
    assert (await apns.provider.send(reg, ALERT)).outcome is Outcome.DROP_REGISTRATION
    assert apns.standin.requests == []


async def test_untrusted_certificate_is_a_retry_not_an_exception(apns: Apns) -> None:
    settings = ApnsSettings(
        key_path=apns.settings.key_path,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=BUNDLE_ID,
        base_url=apns.settings.base_url,
        ca_file=None,  # the system store does not trust the stand-in's CA
    )
    provider = ApnsProvider(settings)
    try:
        result = await provider.send(REG, ALERT)
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.RETRY
    assert apns.standin.requests == []


async def test_connection_refused_is_a_retry(apns: Apns, unused_tcp_port: int) -> None:
    settings = ApnsSettings(
        key_path=apns.settings.key_path,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic=BUNDLE_ID,
        base_url=f"https://127.0.0.1:{unused_tcp_port}",
        ca_file=apns.settings.ca_file,
    )
    provider = ApnsProvider(settings)
    try:
        result = await provider.send(REG, ALERT)
    finally:
        await provider.aclose()
    assert result.outcome is Outcome.RETRY
    assert result.reason.startswith("transport")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="base_url"):
        ApnsSettings(key_path=REG_PATH, key_id="k", team_id="t", topic="b", base_url="http://x")
    with pytest.raises(ValueError, match="token_refresh_seconds"):
        ApnsSettings(
            key_path=REG_PATH, key_id="k", team_id="t", topic="b", token_refresh_seconds=3600
        )


REG_PATH = __import__("pathlib").Path("/nonexistent.p8")
