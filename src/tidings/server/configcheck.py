"""What a :class:`~tidings.server.config.ServerConfig` must hold for a server to start: every
setting in range, the settings that need one another set together, the files and listeners it
names well-formed. :func:`validate` raises :class:`ConfigError` naming the first that is not."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tidings.protocol import MAX_FRAME_BYTES
from tidings.server.forwarded import HEADERS as FORWARDED_HEADERS
from tidings.server.forwarded import TrustedProxies

if TYPE_CHECKING:
    from tidings.server.config import ServerConfig

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: Values of ``sqlite_synchronous``: SQLite's PRAGMA synchronous levels the store accepts.
SQLITE_SYNCHRONOUS = ("full", "normal")
#: Values of ``media_store``: where attachment blobs are kept.
MEDIA_STORES = ("local", "s3")


class ConfigError(ValueError):
    """A setting has a value of the wrong type or out of range. The message names the source."""


def validate(config: ServerConfig) -> None:
    """Raise :class:`ConfigError` naming the first setting out of range or missing another."""
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port {config.port} out of range")
    if config.member_cap < 2:
        raise ConfigError("member_cap must be at least 2")
    if config.idle_timeout <= 0:
        raise ConfigError("idle_timeout must be positive")
    if config.send_queue_frames < 16:
        raise ConfigError("send_queue_frames must be at least 16")
    if config.pending_ttl_days < 1:
        raise ConfigError("pending_ttl_days must be at least 1")
    if config.send_queue_bytes < 2 * MAX_FRAME_BYTES:
        raise ConfigError(f"send_queue_bytes must be at least {2 * MAX_FRAME_BYTES}")
    for rate in ("send_rate_device", "send_rate_account", "send_bytes_per_second"):
        if getattr(config, rate) <= 0:
            raise ConfigError(f"{rate} must be positive")
    if config.send_burst_device < 1 or config.send_burst_account < 1:
        raise ConfigError("send_burst_device and send_burst_account must be at least 1")
    if config.send_burst_bytes < MAX_FRAME_BYTES:
        raise ConfigError(f"send_burst_bytes must be at least {MAX_FRAME_BYTES}")
    if config.account_quota_bytes < 0:
        raise ConfigError("account_quota_bytes must be 0 (unlimited) or more")
    if config.envelope_retention_days < 1:
        raise ConfigError("envelope_retention_days must be at least 1")
    if config.key_claims_per_minute < 1:
        raise ConfigError("key_claims_per_minute must be at least 1")
    if config.provisioning_per_minute < 1:
        raise ConfigError("provisioning_per_minute must be at least 1")
    if config.accounts_per_minute < 1:
        raise ConfigError("accounts_per_minute must be at least 1")
    if config.provisioning_ttl_seconds < 10:
        raise ConfigError("provisioning_ttl_seconds must be at least 10")
    if config.vault_quota_bytes < 0 or config.vault_free_attempts < 0:
        raise ConfigError("vault_quota_bytes and vault_free_attempts must not be negative")
    if config.vault_backoff_cap_seconds < 1:
        raise ConfigError("vault_backoff_cap_seconds must be at least 1")
    if config.max_devices_per_account < 1:
        raise ConfigError("max_devices_per_account must be at least 1")
    if config.header_timeout <= 0 or config.body_timeout <= 0 or config.blob_body_timeout <= 0:
        raise ConfigError("header_timeout, body_timeout and blob_body_timeout must be positive")
    if config.max_pending_connections < 1:
        raise ConfigError("max_pending_connections must be at least 1")
    try:
        TrustedProxies(config.forwarded_allow_ips)
    except ValueError as exc:
        raise ConfigError(f"forwarded_allow_ips: {exc}") from exc
    if config.forwarded_header not in FORWARDED_HEADERS:
        raise ConfigError(f"forwarded_header must be one of {', '.join(FORWARDED_HEADERS)}")
    if config.group_adds_per_minute < 1 or config.group_adds_per_target_per_minute < 1:
        raise ConfigError(
            "group_adds_per_minute and group_adds_per_target_per_minute must be at least 1"
        )
    if config.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ConfigError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
    if config.store != "sqlite" and not config.store.startswith(("postgresql://", "postgres://")):
        raise ConfigError('store must be "sqlite" or a postgresql:// DSN')
    if config.push_coalesce_seconds < 0 or config.push_silent_interval < 0:
        raise ConfigError("push_coalesce_seconds and push_silent_interval must not be negative")
    if config.push_queue_size < 1 or config.push_workers < 1 or config.push_max_attempts < 1:
        raise ConfigError("push_queue_size, push_workers and push_max_attempts must be >= 1")
    if config.push_retry_base <= 0:
        raise ConfigError("push_retry_base must be positive")
    if config.apns_key_path and not (
        config.apns_key_id and config.apns_team_id and config.apns_topic
    ):
        raise ConfigError("apns_key_path needs apns_key_id, apns_team_id and apns_topic")
    if config.webpush_contact and not config.webpush_contact.startswith(("mailto:", "https://")):
        raise ConfigError("webpush_contact must be a mailto: or https: URI")
    _validate_media(config)
    if config.log_level not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")


def _validate_media(config: ServerConfig) -> None:
    if config.media_store not in MEDIA_STORES:
        raise ConfigError(f"media_store must be one of {', '.join(MEDIA_STORES)}")
    if config.media_store == "s3" and not config.media_s3_bucket:
        raise ConfigError("media_store = s3 needs media_s3_bucket")
    least_part = 5 * 1024 * 1024 if config.media_store == "s3" else 64 * 1024
    if config.media_part_size < least_part:
        raise ConfigError(f"media_part_size must be at least {least_part}")
    for name in (
        "media_upload_url_seconds", "media_download_url_seconds", "media_max_size",
        "media_abandoned_hours", "media_retention_days", "media_gc_interval_seconds",
        "media_key_rotation_days",
    ):  # fmt: skip
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if config.media_quota_bytes < 0:
        raise ConfigError("media_quota_bytes must not be negative")
    _validate_operations(config)


#: Values of ``log_format``.
LOG_FORMATS = ("text", "json")


def _validate_operations(config: ServerConfig) -> None:
    """TLS files, log format, the metrics listener and who may read /metrics."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key go together: set both or neither")
    for name in ("tls_cert", "tls_key"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file {path!r}")
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    if config.metrics_listen:
        host, colon, port = config.metrics_listen.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError("metrics_listen must be host:port, e.g. 127.0.0.1:9100")
    try:
        TrustedProxies(config.metrics_allow_ips)
    except ValueError as exc:
        raise ConfigError(f"metrics_allow_ips: {exc}") from exc
