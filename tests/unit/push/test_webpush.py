"""The WebPush provider against the stand-in, which verifies VAPID and decrypts with http_ece;
RFC 8291's worked example byte for byte; the VAPID key file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.standins.webpush import Subscription

from tidings.server.push.ece import encrypt
from tidings.server.push.jws import b64url, b64url_decode
from tidings.server.push.provider import (
    Outcome,
    Platform,
    Priority,
    PushRegistration,
    PushResult,
    Wake,
    WakeKind,
)
from tidings.server.push.settings import WebPushSettings
from tidings.server.push.webpush import (
    PADDED_SIZE,
    WebPushProvider,
    endpoint_origin,
    load_or_create_vapid_key,
    topic_for,
)

from .conftest import FakeClock, WebPush

ALERT = Wake(WakeKind.ALERT, Priority.HIGH, "conv-42", 5)
SILENT = Wake(WakeKind.SILENT, Priority.NORMAL, "conv-42", 6)


def reg(sub: Subscription) -> PushRegistration:
    return PushRegistration(Platform.WEBPUSH, sub.endpoint, p256dh=sub.p256dh, auth=sub.auth)


async def test_alert_is_encrypted_to_the_subscription_and_vapid_signed(
    webpush: WebPush, clock: FakeClock
) -> None:
    sub = webpush.standin.subscribe()
    assert await webpush.provider.send(reg(sub), ALERT) == PushResult.delivered()
    [push] = webpush.standin.pushes
    assert push.problems == []
    assert push.status == 201
    assert push.plaintext is not None
    assert json.loads(push.plaintext) == {"c": "conv-42", "n": 5, "k": "alert"}
    assert push.vapid_key == webpush.provider.public_key
    assert push.vapid_claims == {
        "aud": webpush.standin.base_url,
        "exp": int(clock.now) + 12 * 3600,
        "sub": "mailto:ops@tidings.example",
    }
    assert push.headers["content-encoding"] == "aes128gcm"
    assert push.headers["ttl"] == "3600"
    assert push.headers["urgency"] == "high"
    assert push.headers["topic"] == topic_for("conv-42")
    assert "conv-42" not in push.headers["topic"]


async def test_alert_and_silent_bodies_have_the_same_size(webpush: WebPush) -> None:
    sub = webpush.standin.subscribe()
    await webpush.provider.send(reg(sub), ALERT)
    await webpush.provider.send(reg(sub), SILENT)
    alert, silent = webpush.standin.pushes
    assert silent.headers["urgency"] == "normal"
    assert silent.plaintext is not None
    assert json.loads(silent.plaintext)["k"] == "silent"
    assert alert.headers["content-length"] == silent.headers["content-length"]
    # salt(16) rs(4) idlen(1) key(65) + padded record + delimiter + tag(16)
    assert int(alert.headers["content-length"]) == 86 + PADDED_SIZE + 1 + 16


async def test_vapid_token_is_reused_then_renewed(webpush: WebPush, clock: FakeClock) -> None:
    sub = webpush.standin.subscribe()
    await webpush.provider.send(reg(sub), ALERT)
    clock.advance(6 * 3600 - 1)
    await webpush.provider.send(reg(sub), ALERT)
    clock.advance(1)  # half the 12 h lifetime: renewed, well before the 24 h limit
    await webpush.provider.send(reg(sub), ALERT)
    exps = [p.vapid_claims["exp"] for p in webpush.standin.pushes if p.vapid_claims]
    assert exps[0] == exps[1] < exps[2]
    assert all(p.problems == [] for p in webpush.standin.pushes)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (404, None, PushResult.drop_registration("404")),
        (410, None, PushResult.drop_registration("410")),
        (429, "12", PushResult.retry("429", 12.0)),
        (429, None, PushResult.retry("429")),
        (500, None, PushResult.retry("500")),
        (503, None, PushResult.retry("503")),
        (413, None, PushResult.failed_permanently("413")),
        (400, None, PushResult.failed_permanently("400")),
        (401, None, PushResult.failed_permanently("401")),
        (200, None, PushResult.delivered()),
        (202, None, PushResult.delivered()),
    ],
)
async def test_status_mapping(
    webpush: WebPush, status: int, retry_after: str | None, expected: PushResult
) -> None:
    sub = webpush.standin.subscribe()
    webpush.standin.fail(sub, status, retry_after)
    assert await webpush.provider.send(reg(sub), ALERT) == expected


async def test_unknown_subscription_is_dropped(webpush: WebPush) -> None:
    sub = webpush.standin.subscribe()
    del webpush.standin.subscriptions[sub.endpoint.rsplit("/", 1)[1]]
    assert (await webpush.provider.send(reg(sub), ALERT)).outcome is Outcome.DROP_REGISTRATION


async def test_plain_http_endpoints_are_refused_unless_allowed(
    webpush: WebPush, tmp_path: Path
) -> None:
    sub = webpush.standin.subscribe()
    strict = WebPushProvider(WebPushSettings(data_dir=tmp_path, contact="https://tidings.example"))
    try:
        result = await strict.send(reg(sub), ALERT)
    finally:
        await strict.aclose()
    assert result.outcome is Outcome.DROP_REGISTRATION
    assert webpush.standin.pushes == []


async def test_malformed_subscription_keys_are_dropped(webpush: WebPush) -> None:
    sub = webpush.standin.subscribe()
    bad = PushRegistration(Platform.WEBPUSH, sub.endpoint, p256dh="AAAA", auth=sub.auth)
    assert (await webpush.provider.send(bad, ALERT)).outcome is Outcome.DROP_REGISTRATION
    assert webpush.standin.pushes == []


async def test_unreachable_endpoint_is_a_retry(webpush: WebPush, unused_tcp_port: int) -> None:
    sub = webpush.standin.subscribe()
    gone = PushRegistration(
        Platform.WEBPUSH,
        f"http://127.0.0.1:{unused_tcp_port}/push/x",
        p256dh=sub.p256dh,
        auth=sub.auth,
    )
    assert (await webpush.provider.send(gone, ALERT)).outcome is Outcome.RETRY


def test_vapid_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = WebPushSettings(data_dir=tmp_path, contact="mailto:a@b.example")
    first = WebPushProvider(settings)
    path = settings.vapid_key_file
    assert path == tmp_path / "push" / "vapid_private_key.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert WebPushProvider(settings).public_key == first.public_key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_a_configured_vapid_key_is_used(tmp_path: Path) -> None:
    key_path = tmp_path / "operator.pem"
    key = load_or_create_vapid_key(key_path)
    settings = WebPushSettings(
        data_dir=tmp_path / "data", contact="mailto:a@b.example", vapid_private_key_path=key_path
    )
    expected = key.public_key().public_numbers()
    provider = WebPushProvider(settings)
    point = b64url_decode(provider.public_key)
    assert int.from_bytes(point[1:33], "big") == expected.x
    assert not (tmp_path / "data").exists()


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="contact"):
        WebPushSettings(data_dir=tmp_path, contact="ops@tidings.example")
    with pytest.raises(ValueError, match="jwt_lifetime_seconds"):
        WebPushSettings(data_dir=tmp_path, contact="mailto:a@b", jwt_lifetime_seconds=86401)


def test_endpoint_origin() -> None:
    assert (
        endpoint_origin("https://Push.Example.net/wpush/v2/abc?x=1") == "https://push.example.net"
    )
    assert endpoint_origin("https://u:p@push.example.net:8443/x") == "https://push.example.net:8443"
    assert len(topic_for("x" * 64)) <= 32


def test_rfc8291_worked_example() -> None:
    """RFC 8291 section 5: fixed keys and salt give exactly the published body."""
    as_private = ec.derive_private_key(
        int.from_bytes(b64url_decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"), "big"),
        ec.SECP256R1(),
    )
    body = encrypt(
        b"When I grow up, I want to be a watermelon",
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        "BTBZMqHH6r4Tts7J_aSIgg",
        _ephemeral=as_private,
        _salt=b64url_decode("DGv6ra1nlYgDCS1FRnbzlw"),
    )
    assert b64url(body) == (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInm"
        "YWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQ"
        "exSgSxsj_Qulcy4a-fN"
    )
