"""The REST route table: every call a client can make under ``/v1``, in one place.

Each :class:`Route` names its method, its path template, the JSON body it takes and the body it
answers with. The server registers exactly these routes (a test compares its handlers with this
table) and the client builds every URL from them, so the two cannot drift apart.

Path templates use typed placeholders, ``{name:str}`` or ``{name:int}``. Every call except
account creation, provisioning and health carries ``Authorization: Bearer <device token>``;
errors answer :class:`~tidings.protocol.rest.ApiError` with a 4xx/5xx status. Query parameters
(``messages``: ``after``, ``limit``; ``bundles``: ``device``) are listed with the route.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any, Literal

from tidings.protocol import channels, keys, media, push, rest, social, vault
from tidings.protocol.frames import Watermark

Method = Literal["GET", "POST", "PUT", "DELETE"]
#: Who may call: a device with its token, anybody, or the holder of a provisioning secret.
Auth = Literal["device", "none", "provisioning"]

_PLACEHOLDER = re.compile(r"\{(\w+):(str|int)\}")


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: Method
    #: path template with typed placeholders, e.g. ``/v1/conversations/{conv:str}``
    path: str
    #: JSON body the call takes, if any
    request: Any = None
    #: JSON body of the answer; None for 204 No Content
    response: Any = None
    #: status of a successful answer (``create_direct`` answers 200 for an existing one)
    status: int = 200
    auth: Auth = "device"
    #: query parameters the call understands
    query: tuple[str, ...] = ()

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the path placeholders, in order."""
        return tuple(m.group(1) for m in _PLACEHOLDER.finditer(self.path))

    def url(self, **params: str | int) -> str:
        """The path with every placeholder filled in (each value percent-encoded)."""
        missing = set(self.params) - params.keys()
        extra = params.keys() - set(self.params)
        if missing or extra:
            raise TypeError(f"{self.name}: missing {sorted(missing)}, unexpected {sorted(extra)}")

        def fill(match: re.Match[str]) -> str:
            return urllib.parse.quote(str(params[match.group(1)]), safe="")

        return _PLACEHOLDER.sub(fill, self.path)


HEALTH = Route("health", "GET", "/v1/health", response=rest.Health, auth="none")
CREATE_ACCOUNT = Route(
    "create_account", "POST", "/v1/accounts", rest.CreateAccount, rest.AccountCreated,
    status=201, auth="none",
)  # fmt: skip
ME = Route("me", "GET", "/v1/me", response=rest.Me)
USER = Route("user", "GET", "/v1/users/{username:str}", response=rest.User)
CONVERSATIONS = Route("conversations", "GET", "/v1/conversations", response=list[rest.Conversation])
CREATE_DIRECT = Route(
    "create_direct", "POST", "/v1/conversations/direct", rest.CreateDirect, rest.Conversation,
    status=201,
)  # fmt: skip
CONVERSATION = Route(
    "conversation", "GET", "/v1/conversations/{conv:str}", response=rest.Conversation
)
MESSAGES = Route(
    "messages", "GET", "/v1/conversations/{conv:str}/messages", response=rest.MessagePage,
    query=("after", "limit"),
)  # fmt: skip
RECEIPTS = Route(
    "receipts", "GET", "/v1/conversations/{conv:str}/receipts", response=list[Watermark]
)
CONVERSATION_DEVICES = Route(
    "conversation_devices", "GET", "/v1/conversations/{conv:str}/devices",
    response=keys.DeviceMap,
)  # fmt: skip
CREATE_GROUP = Route(
    "create_group", "POST", "/v1/groups", rest.CreateGroup, rest.Conversation, status=201
)
ADD_MEMBERS = Route(
    "add_members", "POST", "/v1/groups/{conv:str}/members", rest.AddMembers, rest.Conversation
)
REMOVE_MEMBER = Route(
    "remove_member", "DELETE", "/v1/groups/{conv:str}/members/{username:str}",
    response=rest.Conversation,
)  # fmt: skip
LEAVE_GROUP = Route("leave_group", "POST", "/v1/groups/{conv:str}/leave", status=204)
UPLOAD_KEYS = Route("upload_keys", "PUT", "/v1/keys", keys.KeyUpload, keys.KeyCounts)
KEY_COUNTS = Route("key_counts", "GET", "/v1/keys/counts", response=keys.KeyCounts)
BUNDLES = Route(
    "bundles", "GET", "/v1/keys/{account_id:str}", response=keys.PreKeyBundles,
    query=("device",),
)  # fmt: skip
CLAIM_KEYS = Route("claim_keys", "POST", "/v1/keys/claim", keys.ClaimKeys, list[keys.PreKeyBundles])
REMOVE_DEVICE = Route("remove_device", "DELETE", "/v1/devices/{device_id:int}", status=204)
NEW_PROVISIONING = Route(
    "new_provisioning", "POST", "/v1/provisioning", keys.NewProvisioning, keys.Provisioning,
    status=201, auth="none",
)  # fmt: skip
FETCH_PROVISIONING = Route(
    "fetch_provisioning", "GET", "/v1/provisioning/{provisioning_id:str}",
    response=keys.ProvisionedDevice, auth="provisioning",
)  # fmt: skip
APPROVE_PROVISIONING = Route(
    "approve_provisioning", "POST", "/v1/provisioning/{provisioning_id:str}/approve",
    keys.ApproveDevice, keys.ApprovedDevice,
)  # fmt: skip

SETTINGS = Route("settings", "GET", "/v1/settings", response=rest.AccountSettings)
UPDATE_SETTINGS = Route(
    "update_settings", "PUT", "/v1/settings", rest.UpdateSettings, rest.AccountSettings
)

VAULT_STATUS = Route("vault_status", "GET", "/v1/vault", response=vault.VaultStatus)
VAULT_ENROL = Route("vault_enrol", "PUT", "/v1/vault", vault.VaultEnrol, vault.VaultStatus)
VAULT_PARAMS = Route(
    "vault_params", "GET", "/v1/vault/params/{username:str}", response=vault.VaultParams,
    auth="none",
)  # fmt: skip
VAULT_RECOVER = Route(
    "vault_recover", "POST", "/v1/vault/recover", vault.VaultProof, vault.VaultRecovered,
    auth="none",
)  # fmt: skip
VAULT_REGISTER = Route(
    "vault_register", "POST", "/v1/vault/register", vault.RecoverDevice, vault.RecoveredDevice,
    status=201, auth="none",
)  # fmt: skip
VAULT_PASSPHRASE = Route(
    "vault_passphrase", "PUT", "/v1/vault/passphrase", vault.ChangePassphrase, vault.VaultStatus
)
VAULT_PUT_PAGES = Route(
    "vault_put_pages", "POST", "/v1/vault/pages", vault.VaultPages, vault.VaultStatus
)
VAULT_LIST_PAGES = Route("vault_list_pages", "GET", "/v1/vault/pages", response=vault.PageList)
VAULT_FETCH_PAGES = Route(
    "vault_fetch_pages", "POST", "/v1/vault/pages/fetch", vault.FetchPages, list[vault.VaultPage]
)
#: a signed-in device deletes the account's vault (enrolment, pages, tickets): "reset backup"
VAULT_RESET = Route("vault_reset", "DELETE", "/v1/vault", response=vault.VaultStatus)
VAULT_ROUTES = (
    VAULT_STATUS, VAULT_ENROL, VAULT_PARAMS, VAULT_RECOVER, VAULT_REGISTER, VAULT_PASSPHRASE,
    VAULT_PUT_PAGES, VAULT_LIST_PAGES, VAULT_FETCH_PAGES, VAULT_RESET,
)  # fmt: skip

# Push notifications: this device's registration, the server's VAPID key, and the account's
# notification level of one conversation (tidings.protocol.push).
PUSH_REGISTRATION = Route("push_registration", "GET", "/v1/push", response=push.PushStatus)
SET_PUSH = Route("set_push", "PUT", "/v1/push", push.PushRegistration, push.PushStatus)
CLEAR_PUSH = Route("clear_push", "DELETE", "/v1/push", status=204)
VAPID_KEY = Route("vapid_key", "GET", "/v1/push/vapid", response=push.VapidKey, auth="none")
NOTIFICATIONS = Route(
    "notifications", "GET", "/v1/conversations/{conv:str}/notifications",
    response=push.Notifications,
)  # fmt: skip
SET_NOTIFICATIONS = Route(
    "set_notifications", "PUT", "/v1/conversations/{conv:str}/notifications",
    push.UpdateNotifications, push.Notifications,
)  # fmt: skip

NEW_UPLOAD = Route(
    "new_upload", "POST", "/v1/media/uploads", media.NewUpload, media.UploadSlot, status=201
)
UPLOAD_STATUS = Route(
    "upload_status", "GET", "/v1/media/uploads/{blob_id:str}", response=media.UploadStatus
)
RESUME_UPLOAD = Route(
    "resume_upload", "POST", "/v1/media/uploads/{blob_id:str}/resume", response=media.UploadSlot
)
COMPLETE_UPLOAD = Route(
    "complete_upload", "POST", "/v1/media/uploads/{blob_id:str}/complete",
    response=media.BlobCompleted,
)  # fmt: skip
DOWNLOAD_URL = Route("download_url", "GET", "/v1/media/{blob_id:str}", response=media.DownloadUrl)
DELETE_BLOB = Route("delete_blob", "DELETE", "/v1/media/{blob_id:str}", status=204)
MEDIA_USAGE = Route("media_usage", "GET", "/v1/media", response=media.MediaUsage)
#: Attachment blobs (tidings.protocol.media).
MEDIA_ROUTES = (
    NEW_UPLOAD, UPLOAD_STATUS, RESUME_UPLOAD, COMPLETE_UPLOAD, DOWNLOAD_URL, DELETE_BLOB,
    MEDIA_USAGE,
)  # fmt: skip

#: Every REST route, in the order the docs list them.
ROUTES: tuple[Route, ...] = (
    HEALTH, CREATE_ACCOUNT, ME, USER, CONVERSATIONS, CREATE_DIRECT, CONVERSATION, MESSAGES,
    RECEIPTS, CONVERSATION_DEVICES, CREATE_GROUP, ADD_MEMBERS, REMOVE_MEMBER, LEAVE_GROUP,
    UPLOAD_KEYS, KEY_COUNTS, BUNDLES, CLAIM_KEYS, REMOVE_DEVICE, NEW_PROVISIONING,
    FETCH_PROVISIONING, APPROVE_PROVISIONING, SETTINGS, UPDATE_SETTINGS,
    PUSH_REGISTRATION, SET_PUSH, CLEAR_PUSH, VAPID_KEY, NOTIFICATIONS, SET_NOTIFICATIONS,
    *VAULT_ROUTES,
)  # fmt: skip

#: The WebSocket endpoint (frames in :mod:`tidings.protocol.frames`).
WEBSOCKET_PATH = "/v1/ws"

#: The local blob store's endpoint, ``{BLOB_PATH}/{blob_id}``: raw ciphertext bytes, not JSON,
#: so not a :class:`Route`.
#: The presigned URLs the ``/v1/media`` routes hand out point here (when the server keeps blobs
#: itself; with S3 they point at the bucket and this endpoint does not exist). No device
#: token: the URL's HMAC signature (method, blob id, length, offset, expiry) is the
#: authorisation, and its signed length the only limit on the body.
BLOB_PATH = "/v1/blobs"
BLOB_METHODS: tuple[str, ...] = ("PUT", "GET", "HEAD")

ROUTES = ROUTES + MEDIA_ROUTES

# Profiles (end-to-end encrypted blobs), blocking, the account's devices
# (tidings.protocol.social).
SET_PROFILE = Route("set_profile", "PUT", "/v1/profile", social.ProfileUpload, social.Profile)
PROFILE = Route("profile", "GET", "/v1/profiles/{account_id:str}", response=social.Profile)
DEVICES = Route("devices", "GET", "/v1/devices", response=list[social.DeviceInfo])
BLOCKED = Route("blocked", "GET", "/v1/blocks", response=list[social.BlockedAccount])
BLOCK = Route("block", "PUT", "/v1/blocks/{account_id:str}", status=204)
UNBLOCK = Route("unblock", "DELETE", "/v1/blocks/{account_id:str}", status=204)
SOCIAL_ROUTES = (SET_PROFILE, PROFILE, DEVICES, BLOCKED, BLOCK, UNBLOCK)

ROUTES = ROUTES + SOCIAL_ROUTES

# Broadcast channels (tidings.protocol.channels): posts signed, not end-to-end encrypted.
CREATE_CHANNEL = Route(
    "create_channel", "POST", "/v1/channels", channels.CreateChannel, channels.ChannelInfo,
    status=201,
)  # fmt: skip
MY_CHANNELS = Route("my_channels", "GET", "/v1/channels", response=list[channels.ChannelInfo])
CHANNEL = Route("channel", "GET", "/v1/channels/{channel:str}", response=channels.ChannelInfo)
CHANNEL_BY_HANDLE = Route(
    "channel_by_handle", "GET", "/v1/channel-handles/{handle:str}", response=channels.ChannelInfo
)
SUBSCRIBE = Route(
    "subscribe", "POST", "/v1/channels/{channel:str}/subscription", channels.JoinChannel,
    channels.ChannelInfo,
)  # fmt: skip
UNSUBSCRIBE = Route("unsubscribe", "DELETE", "/v1/channels/{channel:str}/subscription", status=204)
JOIN_BY_INVITE = Route(
    "join_by_invite", "POST", "/v1/channel-invites/{token:str}", response=channels.ChannelInfo
)
CREATE_INVITE = Route(
    "create_invite", "POST", "/v1/channels/{channel:str}/invites",
    response=channels.ChannelInvite, status=201,
)  # fmt: skip
REVOKE_INVITE = Route(
    "revoke_invite", "DELETE", "/v1/channels/{channel:str}/invites/{token:str}", status=204
)
ADD_CHANNEL_ADMIN = Route(
    "add_channel_admin", "PUT", "/v1/channels/{channel:str}/admins/{username:str}",
    response=channels.ChannelInfo,
)  # fmt: skip
REMOVE_CHANNEL_ADMIN = Route(
    "remove_channel_admin", "DELETE", "/v1/channels/{channel:str}/admins/{username:str}",
    response=channels.ChannelInfo,
)  # fmt: skip
CHANNEL_SUBSCRIBERS = Route(
    "channel_subscribers", "GET", "/v1/channels/{channel:str}/subscribers",
    response=channels.SubscriberPage, query=("start", "limit"),
)  # fmt: skip
CHANNEL_NOTIFY = Route(
    "channel_notify", "PUT", "/v1/channels/{channel:str}/notify", channels.SetChannelNotify,
    channels.ChannelInfo,
)  # fmt: skip
POST_TO_CHANNEL = Route(
    "post_to_channel", "POST", "/v1/channels/{channel:str}/posts", channels.NewPost,
    channels.PostAccepted,
)  # fmt: skip
CHANNEL_POSTS = Route(
    "channel_posts", "GET", "/v1/channels/{channel:str}/posts", response=channels.PostPage,
    query=("after", "before", "limit"),
)  # fmt: skip
CHANNEL_ROUTES = (
    CREATE_CHANNEL, MY_CHANNELS, CHANNEL, CHANNEL_BY_HANDLE, SUBSCRIBE, UNSUBSCRIBE,
    JOIN_BY_INVITE, CREATE_INVITE, REVOKE_INVITE, ADD_CHANNEL_ADMIN, REMOVE_CHANNEL_ADMIN,
    CHANNEL_SUBSCRIBERS, CHANNEL_NOTIFY, POST_TO_CHANNEL, CHANNEL_POSTS,
)  # fmt: skip

ROUTES = ROUTES + CHANNEL_ROUTES

#: Routes by name.
BY_NAME: dict[str, Route] = {r.name: r for r in ROUTES}
