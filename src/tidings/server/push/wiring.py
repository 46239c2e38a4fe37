"""Building the configured push providers from the server's settings (called by the
composition root). The log provider is always there, so a server with no push service
configured (``make run``) still accepts ``log`` registrations and needs no credentials."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Protocol

from tidings.server.push.log import LogProvider
from tidings.server.push.provider import Platform, PushProvider

log = logging.getLogger(__name__)


class PushConfig(Protocol):
    """The settings read here (a :class:`~tidings.server.config.ServerConfig`)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def apns_key_path(self) -> str: ...
    @property
    def apns_key_id(self) -> str: ...
    @property
    def apns_team_id(self) -> str: ...
    @property
    def apns_topic(self) -> str: ...
    @property
    def apns_base_url(self) -> str: ...
    @property
    def apns_ca_file(self) -> str: ...
    @property
    def fcm_service_account(self) -> str: ...
    @property
    def fcm_base_url(self) -> str: ...
    @property
    def fcm_token_uri(self) -> str: ...
    @property
    def fcm_ca_file(self) -> str: ...
    @property
    def webpush_contact(self) -> str: ...
    @property
    def webpush_vapid_key_path(self) -> str: ...
    @property
    def webpush_allow_http(self) -> bool: ...
    @property
    def webpush_ca_file(self) -> str: ...


@dataclasses.dataclass
class Providers:
    by_platform: dict[Platform, PushProvider]
    #: the VAPID application server key (base64url); empty without WebPush
    vapid_public_key: str = ""

    async def aclose(self) -> None:
        for provider in self.by_platform.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing the %s push provider failed", provider.platform.value)


def _path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


def build_providers(config: PushConfig) -> Providers:
    """Every provider the settings configure, plus the log provider."""
    providers: dict[Platform, PushProvider] = {Platform.LOG: LogProvider()}
    vapid = ""
    if config.apns_key_path:
        from tidings.server.push.apns import ApnsProvider
        from tidings.server.push.settings import ApnsSettings

        providers[Platform.APNS] = ApnsProvider(
            ApnsSettings(
                key_path=Path(config.apns_key_path).expanduser(),
                key_id=config.apns_key_id,
                team_id=config.apns_team_id,
                topic=config.apns_topic,
                base_url=config.apns_base_url,
                ca_file=_path(config.apns_ca_file),
            )
        )
    if config.fcm_service_account:
        from tidings.server.push.fcm import FcmProvider
        from tidings.server.push.settings import FcmSettings

        providers[Platform.FCM] = FcmProvider(
            FcmSettings(
                service_account_path=Path(config.fcm_service_account).expanduser(),
                base_url=config.fcm_base_url,
                token_uri=config.fcm_token_uri or None,
                ca_file=_path(config.fcm_ca_file),
            )
        )
    if config.webpush_contact:
        from tidings.server.push.settings import WebPushSettings
        from tidings.server.push.webpush import WebPushProvider

        webpush = WebPushProvider(
            WebPushSettings(
                data_dir=config.data_dir,
                contact=config.webpush_contact,
                vapid_private_key_path=_path(config.webpush_vapid_key_path),
                ca_file=_path(config.webpush_ca_file),
                allow_http_endpoints=config.webpush_allow_http,
            )
        )
        providers[Platform.WEBPUSH] = webpush
        vapid = webpush.public_key
    log.info("push providers: %s", ", ".join(sorted(p.value for p in providers)))
    return Providers(providers, vapid)
