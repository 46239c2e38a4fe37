"""Server settings: defaults, a TOML file, ``TIDINGS_*`` environment variables and the command
line, in increasing order of precedence."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from tidings.server import configcheck
from tidings.server.configcheck import ConfigError as ConfigError

#: The TOML file looked for inside the data directory when no ``--config`` is given.
DEFAULT_TOML_NAME = "tidings.toml"

DEFAULT_DATA_DIR = Path("./tidings-data")

#: Environment variable names that differ from ``TIDINGS_<FIELD>``.
_ENV_ALIASES = {"data_dir": ("TIDINGS_DATA", "TIDINGS_DATA_DIR")}


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    #: address to listen on ("0.0.0.0" or "::" for every interface; behind a reverse proxy on
    #: the same machine keep the loopback default)
    host: str = "127.0.0.1"
    #: TCP port to listen on
    port: int = 8080
    #: holds the SQLite database and, if present, ``tidings.toml``
    data_dir: Path = DEFAULT_DATA_DIR
    #: most members a group may have
    member_cap: int = 1000
    #: whether POST /v1/accounts creates accounts
    registration_open: bool = True
    #: seconds a WebSocket may stay silent before the server closes it
    idle_timeout: float = 60.0
    #: frames queued for one connection before it counts as too slow and is disconnected
    send_queue_frames: int = 2048
    #: days an unacknowledged envelope stays in a device's pending queue
    pending_ttl_days: int = 30
    #: bytes of frames queued for one connection before it counts as too slow and is closed
    #: with 1013 (try again later). Bounds the memory one peer that does not read can pin (the
    #: frame cap above alone let one connection hold ~330 MiB); its envelopes stay pending and
    #: come back on the next connection. At least one MAX_FRAME_BYTES frame.
    send_queue_bytes: int = 4 * 1024 * 1024
    #: Sends + DeviceSends one device may make per second, sustained (a token bucket) ...
    send_rate_device: float = 20.0
    #: ... and at once after a quiet spell (the bucket's size): a human never hits it
    send_burst_device: int = 200
    #: Sends + DeviceSends per second of all an account's devices together, and its burst
    send_rate_account: float = 40.0
    #: ... and the burst of all an account's devices together
    send_burst_account: int = 400
    #: bytes of Sends + DeviceSends an account may upload per second, sustained, and its burst
    #: (at least one MAX_FRAME_BYTES frame): bounds the disk and fan-out one account can cause
    send_bytes_per_second: int = 4 * 1024 * 1024
    send_burst_bytes: int = 32 * 1024 * 1024
    #: envelope bytes an account may have stored on the server at once (what it sent that is
    #: still held: not yet acked by every member device, within the retention period); a Send
    #: over it is refused ``quota_exceeded`` (the client retries later). 0: unlimited
    account_quota_bytes: int = 1024 * 1024 * 1024
    #: days a stored envelope is kept at most, acked or not (history lives on the devices);
    #: one acked by every member device is dropped sooner. A resend of a message id is answered
    #: with its original seq for this long.
    envelope_retention_days: int = 30
    #: refuse Sends that carry neither device_payloads nor a devices_digest (plaintext)
    require_e2ee: bool = True
    #: prekey bundles (devices) one account may claim per minute, as a token bucket of that
    #: size; enough to set up sessions with every device of a 1,000-member group at once
    key_claims_per_minute: int = 6000
    #: provisioning requests (POST /v1/provisioning) per client IP address per minute
    provisioning_per_minute: int = 10
    #: accounts created (POST /v1/accounts) per client IP address per minute
    accounts_per_minute: int = 30
    #: seconds a provisioning request (device link) stays valid
    provisioning_ttl_seconds: int = 600
    #: most devices an account may have (linking refuses more)
    max_devices_per_account: int = 16
    #: seconds a client has, from connecting or from the first byte of a request, to send the
    #: request line and all headers (a WebSocket upgrade too); then the connection is closed
    header_timeout: float = 10.0
    #: seconds a client has, once the headers are in, to send the rest of the request body
    body_timeout: float = 30.0
    #: seconds a client has for the body of a PUT to the local blob store (/v1/blobs: one part
    #: of an attachment, up to media_part_size bytes, on a slow mobile link) instead of
    #: body_timeout
    blob_body_timeout: float = 900.0
    #: connections still sending their request line and headers at once; a new one past this
    #: closes the oldest (a slow-header flood cannot hold every file descriptor)
    max_pending_connections: int = 512
    #: proxies whose X-Forwarded-For / Forwarded headers name the client: comma-separated
    #: addresses or networks (CIDR), "*" for any peer; empty (the default): trust no header,
    #: the client is the TCP peer
    forwarded_allow_ips: str = ""
    #: the one header those proxies set: "x-forwarded-for" or "forwarded" (RFC 7239)
    forwarded_header: str = "x-forwarded-for"
    #: accounts one account may add to groups per minute (creating a group counts its members)
    group_adds_per_minute: int = 300
    #: times one account may be added to groups per minute, by anybody
    group_adds_per_target_per_minute: int = 20
    #: how SQLite makes a commit durable. "full" (the default): the WAL is fsynced at every
    #: commit, so an Accepted the client got survives a power cut (group commit shares one
    #: fsync among the Sends committed together). "normal": fsync only at checkpoints, faster,
    #: but may lose the last second or so of accepted messages on power loss (never on a crash
    #: of the process alone)
    sqlite_synchronous: str = "full"
    #: where the server keeps its state: "sqlite" (the default: tidings.sqlite3 in data_dir) or
    #: a PostgreSQL DSN, postgresql://user:password@host:port/database, which several server
    #: nodes may share (the schema is created or migrated at start)
    store: str = dataclasses.field(default="sqlite", repr=False)
    # ---- attachments (docs/e2ee.md "Attachments"): ciphertext blobs behind presigned URLs
    #: where blobs are kept: "local" (files under media_dir, served by this server at
    #: /v1/blobs with HMAC-presigned URLs) or "s3" (a bucket the clients PUT to and GET from
    #: directly with SigV4-presigned URLs)
    media_store: str = "local"
    #: directory of the local blob store (created 0700); empty: <data_dir>/media
    media_dir: str = ""
    #: file of the local store's URL signing keys (0600); empty: <media_dir>/url-keys.json
    media_signing_keys: str = ""
    #: days after which a new URL signing key is made; the previous one keeps verifying until
    #: the URLs it signed have expired
    media_key_rotation_days: int = 7
    #: prefix of the local store's presigned URLs (a CDN or proxy in front); empty: URLs
    #: relative to the server's own URL (/v1/blobs/...)
    media_public_url: str = ""
    #: seconds a presigned upload URL lives, and a download URL
    media_upload_url_seconds: int = 15 * 60
    media_download_url_seconds: int = 60 * 60
    #: largest blob (ciphertext bytes) an upload slot is made for
    media_max_size: int = 100 * 1024 * 1024
    #: bytes of live blobs (uploading and uploaded) one account may hold
    media_quota_bytes: int = 2 * 1024 * 1024 * 1024
    #: blobs above this are uploaded in parts of this size and resume after a cut (S3: >= 5 MiB)
    media_part_size: int = 8 * 1024 * 1024
    #: hours after which an upload never completed is deleted (fractions allowed: 0.5)
    media_abandoned_hours: float = 24.0
    #: days after which an uploaded blob is deleted. The server cannot see which messages
    #: refer to a blob (the pointer is inside the ciphertext), so this is the only rule:
    #: a recipient that has not downloaded by then cannot any more
    media_retention_days: int = 45
    #: seconds between two garbage collections (and URL key rotation checks)
    media_gc_interval_seconds: int = 3600
    #: S3: bucket (must exist), endpoint (empty: AWS), region, credentials (empty: boto3's
    #: default chain), key prefix and path-style addressing (MinIO, Garage, Ceph...)
    media_s3_bucket: str = ""
    media_s3_endpoint: str = ""
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str = ""
    media_s3_secret_access_key: str = dataclasses.field(default="", repr=False)
    media_s3_prefix: str = "tidings/"
    media_s3_path_style: bool = True
    #: bytes of sealed history pages one account may keep in its vault (0: unlimited)
    vault_quota_bytes: int = 512 * 1024 * 1024
    #: failed vault recovery proofs per account that cost nothing; each further one doubles
    #: the wait before the next (1 s, 2 s, 4 s, ... up to vault_backoff_cap_seconds)
    vault_free_attempts: int = 5
    vault_backoff_cap_seconds: float = 900.0
    # ---- push notifications (README "Push notifications"); the log provider is always on
    #: seconds during which a device that has not connected since its last push gets no
    #: further push unless the new one is louder
    push_coalesce_seconds: float = 10.0
    #: at most one silent (background) push per device per this many seconds
    push_silent_interval: float = 60.0
    #: wakes waiting for a provider; past it the oldest silent ones are dropped first
    push_queue_size: int = 10_000
    #: concurrent sends to the providers
    push_workers: int = 4
    #: tries per wake (transient failures back off exponentially)
    push_max_attempts: int = 5
    #: first retry delay in seconds (doubles per try, jittered, capped at 5 minutes)
    push_retry_base: float = 1.0
    #: accept WebPush endpoints on loopback, private and link-local addresses (tests, a
    #: distributor on the LAN); off: such endpoints are refused (server-side request forgery)
    push_allow_private_endpoints: bool = False
    #: APNs: the .p8 signing key, its Key ID, the Team ID and the app's bundle id; APNs is on
    #: when apns_key_path is set
    apns_key_path: str = ""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    #: https://api.push.apple.com, https://api.sandbox.push.apple.com or a relay
    apns_base_url: str = "https://api.push.apple.com"
    #: a PEM CA bundle to trust instead of the system store (a relay, the test stand-in)
    apns_ca_file: str = ""
    #: FCM: the service-account JSON (FCM is on when it is set), the API base URL and the
    #: OAuth2 token endpoint (empty: the service account's token_uri)
    fcm_service_account: str = ""
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_uri: str = ""
    fcm_ca_file: str = ""
    #: WebPush / UnifiedPush: the VAPID contact (mailto: or https:); WebPush is on when set.
    #: The VAPID key is generated into <data>/push/ unless webpush_vapid_key_path names one
    webpush_contact: str = ""
    webpush_vapid_key_path: str = ""
    #: also accept and push to plain-http endpoints (tests, a LAN distributor)
    webpush_allow_http: bool = False
    webpush_ca_file: str = ""
    # ---- running it for real people (docs/deploy.md)
    #: PEM certificate chain: with tls_key, the server speaks HTTPS/WSS itself (SIGHUP
    #: reloads both files without dropping the listener); empty: plain HTTP, for a reverse
    #: proxy that terminates TLS
    tls_cert: str = ""
    #: PEM private key of tls_cert
    tls_key: str = ""
    #: "text" (the default) or "json": one JSON object per line, with a request id per HTTP
    #: request and WebSocket connection; secrets are redacted either way
    log_format: str = "text"
    #: "host:port" of a separate plain-HTTP listener for GET /metrics (Prometheus); empty
    #: (the default): /metrics is served on the main port
    metrics_listen: str = ""
    #: who may read /metrics on the main port besides loopback: comma-separated addresses or
    #: networks (CIDR); the separate metrics_listen listener answers anybody who reaches it
    metrics_allow_ips: str = ""
    #: Unix socket of the admin API that `tidings admin` talks to, relative to data_dir
    #: (mode 0600 in the 0700 data directory: only the server's user and root reach it);
    #: empty: no admin API
    admin_socket: str = "admin.sock"
    # ---- broadcast channels (docs/e2ee.md "Channels")
    #: NATS server of the channel fan-out queue (JetStream), e.g. nats://127.0.0.1:4222;
    #: empty: the embedded in-process queue (one node)
    nats_url: str = ""
    #: JetStream stream of channel posts (its subjects are <stream>.posts and .members)
    nats_stream: str = "tidings_channels"
    #: this node's durable consumer name; empty: host name and port (keep it stable across
    #: restarts: a node resumes from its consumer's position)
    nats_node: str = ""
    #: at most one push per device per this many seconds for channel posts (subscribers who
    #: chose the level all; channels default to none)
    channel_push_interval: float = 300.0
    #: this node's name among several sharing store and nats_url (the bus's presence keys and
    #: logs); empty: host name and port
    node_id: str = ""
    #: critical, error, warning, info or debug; no level logs a token, key or payload
    log_level: str = "info"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "tidings.sqlite3"

    @classmethod
    def load(
        cls,
        cli_overrides: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        toml_path: Path | None = None,
    ) -> ServerConfig:
        """Combine the sources: CLI > environment > TOML > defaults.

        ``cli_overrides`` maps field names to values; ``None`` values count as "not given".
        ``env`` defaults to ``os.environ``. Without ``toml_path`` the file
        ``<data_dir>/tidings.toml`` is read if it exists, where ``data_dir`` is the one the CLI
        or environment chose (or the default).
        """
        environ = os.environ if env is None else env
        cli = {k: v for k, v in (cli_overrides or {}).items() if v is not None}
        for name in cli:
            if name not in _FIELD_TYPES:
                raise ConfigError(f"unknown setting {name!r}")

        from_env: dict[str, object] = {}
        for name in _FIELD_TYPES:
            for var in _ENV_ALIASES.get(name, (f"TIDINGS_{name.upper()}",)):
                if var in environ:
                    from_env[name] = _convert(name, environ[var], f"environment {var}")
                    break

        explicit_toml = toml_path is not None
        if toml_path is None:
            data_dir = cli.get("data_dir", from_env.get("data_dir", DEFAULT_DATA_DIR))
            toml_path = Path(str(data_dir)) / DEFAULT_TOML_NAME
        from_toml: dict[str, object] = {}
        if explicit_toml or toml_path.exists():
            try:
                raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read {toml_path}: {exc}") from exc
            section = raw.get("server", raw)
            if not isinstance(section, dict):
                raise ConfigError(f"{toml_path}: [server] must be a table")
            for key, value in section.items():
                name = "data_dir" if key == "data" else key
                if name not in _FIELD_TYPES:
                    raise ConfigError(f"{toml_path}: unknown setting {key!r}")
                from_toml[name] = _convert(name, value, str(toml_path))

        values: dict[str, object] = {}
        for source, label in ((from_toml, None), (from_env, None), (cli, "command line")):
            for name, value in source.items():
                values[name] = value if label is None else _convert(name, value, label)
        # `_convert` gave each value its field's type; msgspec checks that and builds the object.
        try:
            config = msgspec.convert(values, type=cls, dec_hook=_keep_path)
        except msgspec.ValidationError as exc:
            raise ConfigError(str(exc)) from exc
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of range or missing another
        (server/configcheck.py)."""
        configcheck.validate(self)


#: Each setting's type, as written in the class (a string: annotations are not evaluated).
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(ServerConfig)}


def _keep_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, Path):
        return value
    raise TypeError(f"cannot make {kind} of {value!r}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, value: object, source: str) -> object:
    """Coerce a raw setting (a string from the environment, a TOML value, a CLI value) to the
    type of field ``name``."""
    kind = _FIELD_TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected a boolean")
        if kind == "int":
            if isinstance(value, bool | float):
                raise ValueError("expected an integer")
            return int(str(value).strip())
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(str(value).strip())
        if kind == "Path":
            return Path(str(value)).expanduser()
        if name == "forwarded_header":
            return str(value).strip().lower()
        if name in ("log_level", "sqlite_synchronous", "log_format", "media_store"):
            return str(value).strip().lower()
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: bad value for {name}: {value!r} ({exc})") from exc
