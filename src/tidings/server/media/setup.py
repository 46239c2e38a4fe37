"""Build the configured blob store from the server's settings (``media_*`` in
:class:`tidings.server.config.ServerConfig`).

The local store keeps its files under ``media_dir`` (default ``<data_dir>/media``, 0700) and is
served by the server's own blob endpoint; S3 is reached through boto3 with the configured
endpoint and credentials. Either way the limits and lifetimes are one :class:`MediaSettings`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .blobstore import BlobStore
from .handlers import BlobRequest, BlobResponse, handle_blob_request
from .settings import LocalStoreSettings, MediaSettings, S3Settings

if TYPE_CHECKING:
    from tidings.server.config import ServerConfig

__all__ = ["BuiltStore", "build_blob_store", "media_settings"]

_DAY = 24 * 3600


def media_settings(config: ServerConfig) -> MediaSettings:
    part = config.media_part_size
    return MediaSettings(
        max_blob_size=config.media_max_size,
        account_quota_bytes=config.media_quota_bytes,
        upload_url_ttl_s=config.media_upload_url_seconds,
        download_url_ttl_s=config.media_download_url_seconds,
        resumable_threshold=part,
        part_size=part,
        abandoned_upload_ttl_s=max(1, round(config.media_abandoned_hours * 3600)),
        retention_s=config.media_retention_days * _DAY,
    )


@dataclass(frozen=True, slots=True)
class BuiltStore:
    """The blob store, the handler of its URLs if this server serves them, and the periodic
    URL signing key rotation (a no-op for S3)."""

    store: BlobStore
    serve: Callable[[BlobRequest], Awaitable[BlobResponse]] | None
    rotate: Callable[[], None]


def build_blob_store(config: ServerConfig) -> BuiltStore:
    media = media_settings(config)
    if config.media_store == "s3":
        from .s3 import S3BlobStore  # boto3 is imported only when S3 is used

        s3 = S3BlobStore(
            S3Settings(
                bucket=config.media_s3_bucket,
                endpoint_url=config.media_s3_endpoint or None,
                region=config.media_s3_region,
                access_key_id=config.media_s3_access_key_id or None,
                secret_access_key=config.media_s3_secret_access_key or None,
                prefix=config.media_s3_prefix,
                path_style=config.media_s3_path_style,
                media=media,
            )
        )
        return BuiltStore(s3, None, lambda: None)
    from .local import LocalBlobStore

    root = Path(config.media_dir) if config.media_dir else config.data_dir / "media"
    base = config.media_public_url.rstrip("/") or "/v1/blobs"
    local = LocalBlobStore(
        LocalStoreSettings(
            root=root,
            base_url=base,
            media=media,
            key_file=Path(config.media_signing_keys) if config.media_signing_keys else None,
        )
    )
    rotation = config.media_key_rotation_days * _DAY

    def rotate() -> None:
        local.keys.rotate_if_older(rotation)

    return BuiltStore(local, functools.partial(handle_blob_request, local), rotate)
