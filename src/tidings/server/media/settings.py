"""Settings of the media (attachment blob) service: frozen dataclasses, documented field by field.

Guarantees stated here are enforced by the stores: a blob is never larger than
:attr:`MediaSettings.max_blob_size`; presigned URLs never outlive their expiry; abandoned uploads
and old blobs are removed by :mod:`.gc` without relying on bucket lifecycle rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalStoreSettings", "MediaSettings", "S3Settings"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Limits and lifetimes shared by every blob store."""

    max_blob_size: int = 100 * MiB
    """Largest blob (ciphertext bytes) an upload slot may be created for."""
    account_quota_bytes: int = 2 * 1024 * MiB
    """Total bytes of live blobs (pending and completed) one account may hold."""
    upload_url_ttl_s: int = 15 * 60
    """Lifetime of presigned upload URLs, in seconds."""
    download_url_ttl_s: int = 60 * 60
    """Lifetime of presigned download URLs, in seconds."""
    resumable_threshold: int = 8 * MiB
    """Blobs larger than this are uploaded in parts and can resume after a cut."""
    part_size: int = 8 * MiB
    """Size of each part of a resumable upload (S3 needs ≥ 5 MiB for all but the last)."""
    abandoned_upload_ttl_s: int = 24 * 3600
    """An upload not completed this long after its slot was created is deleted by the GC."""
    retention_s: int = 45 * 24 * 3600
    """A completed blob is deleted this long after completion."""

    def __post_init__(self) -> None:
        if self.max_blob_size <= 0 or self.part_size <= 0 or self.resumable_threshold < 0:
            raise ValueError("sizes must be positive")
        if min(self.upload_url_ttl_s, self.download_url_ttl_s) <= 0:
            raise ValueError("URL lifetimes must be positive")

    @property
    def max_url_ttl_s(self) -> int:
        """The longest any presigned URL lives (how long a retired signing key must verify)."""
        return max(self.upload_url_ttl_s, self.download_url_ttl_s)


@dataclass(frozen=True, slots=True)
class LocalStoreSettings:
    """Blobs as files under the server's data directory."""

    root: Path
    """Directory of blobs, metadata and the URL signing keys (created 0700)."""
    base_url: str
    """Public URL prefix where the blob handlers are mounted, e.g.
    ``https://chat.example.org/v1/blobs``; URLs are ``{base_url}/{blob_id}?...``."""
    media: MediaSettings = field(default_factory=MediaSettings)
    """Shared limits and lifetimes."""
    io_chunk_size: int = 256 * 1024
    """Bytes per read when streaming a blob to a client."""
    key_file: Path | None = None
    """File of the URL signing keys (0600); ``None``: ``root/url-keys.json``."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Blobs in an S3-compatible bucket (AWS, MinIO, Garage, Ceph...)."""

    bucket: str
    """Bucket name; it must exist. No lifecycle rules are needed: our GC expires blobs."""
    endpoint_url: str | None = None
    """Endpoint for non-AWS services, e.g. ``https://minio.example.org:9000``; ``None`` = AWS."""
    region: str = "us-east-1"
    """Region used for SigV4 signing."""
    access_key_id: str | None = None
    """Access key; ``None`` uses boto3's default credential chain."""
    secret_access_key: str | None = field(default=None, repr=False)
    """Secret key (never printed in ``repr``)."""
    session_token: str | None = field(default=None, repr=False)
    """Optional STS session token."""
    prefix: str = "tidings/"
    """Key prefix of every object the store writes (``blobs/`` and ``meta/`` go below it)."""
    path_style: bool = True
    """Path-style addressing (``endpoint/bucket/key``), which most self-hosted services need."""
    media: MediaSettings = field(default_factory=MediaSettings)
    """Shared limits and lifetimes."""
