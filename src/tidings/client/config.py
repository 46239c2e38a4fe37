"""What a :class:`~tidings.client.Client` can be tuned with (:class:`ClientConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.crypto.vault import PRODUCTION_LIMITS, KdfLimits, KdfParams

from .core.types import EngineSettings
from .rest import HTTP_TIMEOUT


@dataclass(frozen=True)
class ClientConfig:
    """Tunables of a :class:`Client`; the defaults suit a desktop or a phone in the foreground
    (a push-woken phone wants other engine timings)."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    #: seconds for one REST call
    http_timeout: float = HTTP_TIMEOUT
    #: bytes of downloaded attachments kept in the profile (least recently used go first)
    media_cache_bytes: int = 512 * 1024 * 1024
    #: images from others up to this size are downloaded as soon as they arrive (0: never)
    auto_download_bytes: int = 4 * 1024 * 1024
    #: messages per conversation kept on the device once backup is on; older ones are removed
    #: locally after they are safely in the vault and load from it when scrolled to
    keep_messages: int = 1000
    #: seconds between background vault uploads (changes wake it sooner)
    backup_interval: float = 30.0
    #: what Argon2id params the client accepts from the server (tests may lower the floor)
    vault_limits: KdfLimits = PRODUCTION_LIMITS
    #: params for a new enrolment (None: the defaults of tidings.crypto.vault)
    vault_params: KdfParams | None = None
    #: allow plain http:// and ws:// to a host that is not loopback (client/tls.py)
    insecure: bool = False
    #: a PEM file of CA certificates to trust instead of certifi's (a private CA, a
    #: self-signed server)
    ca_file: str | None = None
