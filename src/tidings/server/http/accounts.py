"""Accounts: health, account creation, who am I, users by name."""

from __future__ import annotations

import dataclasses
import hmac
import logging

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

import tidings
from tidings.protocol import ErrorCode, routes
from tidings.protocol.rest import AccountCreated, CreateAccount, Health, Me, User
from tidings.server.admin.service import AdminService
from tidings.server.auth import new_token, secret_hash
from tidings.server.config import ServerConfig
from tidings.server.delivery import DeliveryService, Device, new_id
from tidings.server.http.common import (
    HttpRequest,
    Injected,
    client_address,
    decode_body,
    endpoint,
    to_json,
)
from tidings.server.ratelimit import RateLimiter
from tidings.server.store import Refused, Store

log = logging.getLogger(__name__)


@endpoint(routes.HEALTH)
async def health() -> bytes:
    return to_json(Health(ok=True, version=tidings.__version__))


@endpoint(routes.CREATE_ACCOUNT)
async def create_account(
    request: HttpRequest,
    config: Injected[ServerConfig],
    store: Injected[Store],
    delivery: Injected[DeliveryService],
    account_limiter: Injected[RateLimiter],
    admin: Injected[AdminService | None],
) -> bytes:
    body = await decode_body(request, CreateAccount)
    if not config.registration_open and (body.invite is None or admin is None):
        raise Refused(
            ErrorCode.REGISTRATION_CLOSED, "registration is closed: sign-up needs an invite"
        )
    if not account_limiter.allow(client_address(request)):
        raise Refused(ErrorCode.RATE_LIMITED, "too many accounts created from this address")
    if body.invite is not None and admin is not None:
        # One use of the invite; given back if the sign-up then fails or was one already made.
        try:
            claimed = await admin.claim_invite(body.invite, body.username)
        except Refused:
            if not await _is_repeat(body, store):
                raise
            return (await _create(body, store, delivery)).body  # the invite was used by it
        try:
            answer = await _create(body, store, delivery)
        except BaseException:
            await admin.refund_invite(claimed)
            raise
        if answer.repeated:
            await admin.refund_invite(claimed)
        return answer.body
    return (await _create(body, store, delivery)).body


async def _is_repeat(body: CreateAccount, store: Store) -> bool:
    """Whether this sign-up was already done (same username, same client-chosen token)."""
    if body.token is None:
        return False
    token_key, _, secret = body.token.partition(".")
    record = await store.device_by_token_key(token_key)
    return (
        record is not None
        and record.username == body.username
        and hmac.compare_digest(record.token_hash, secret_hash(secret))
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Created:
    body: bytes
    #: a repeat of a sign-up already done (its answer was lost)
    repeated: bool


async def _create(body: CreateAccount, store: Store, delivery: DeliveryService) -> _Created:
    account_id = new_id("a")
    if body.token is not None:
        # The client chose its token before its first try: a retry whose first answer was
        # lost gets the same account (the server keeps only the secret's hash).
        token_key, _, secret = body.token.partition(".")
        found = await store.create_account_once(
            account_id=account_id,
            username=body.username,
            device_name=body.device_name,
            token_key=token_key,
            token_hash=secret_hash(secret),
            now=delivery.clock(),
        )
        if found == account_id:
            log.info("account %s created", account_id)
        else:
            log.info("account %s: sign-up repeated", found)
        created = AccountCreated(
            account_id=found, username=body.username, device_id=1, token=body.token
        )
        return _Created(to_json(created), repeated=found != account_id)
    token = new_token()
    await store.create_account(
        account_id=account_id,
        username=body.username,
        device_name=body.device_name,
        token_key=token.key,
        token_hash=token.secret_hash,
        now=delivery.clock(),
    )
    log.info("account %s created", account_id)
    created = AccountCreated(
        account_id=account_id, username=body.username, device_id=1, token=token.token
    )
    return _Created(to_json(created), repeated=False)


@endpoint(routes.ME)
async def me(caller: Injected[Device]) -> bytes:
    return to_json(
        Me(
            account_id=caller.account_id,
            username=caller.username,
            device_id=caller.device_id,
            device_name=caller.device_name,
        )
    )


@endpoint(routes.USER)
async def user(caller: Injected[Device], store: Injected[Store], username: FromPath[str]) -> bytes:
    found = (await store.accounts_by_username([username])).get(username)
    if found is None:
        raise Refused(ErrorCode.NOT_FOUND, "no such user")
    return to_json(User(account_id=found.account_id, username=found.username))


HANDLERS: list[HTTPRouteHandler] = [health, create_account, me, user]
