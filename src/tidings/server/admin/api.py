"""The admin API: JSON over HTTP on a Unix socket (setting ``admin_socket``, default
``<data_dir>/admin.sock``). The socket is the authentication: mode 0600 inside the 0700 data
directory, so only the server's own user (and root) can connect. Never served on a TCP port."""

from __future__ import annotations

import msgspec
from litestar import Litestar, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import FromPath, SkipValidation
from litestar.types import ExceptionHandlersMap

from tidings.protocol import ErrorCode
from tidings.server.admin.service import AdminService
from tidings.server.store import Refused

Admin = SkipValidation[AdminService]


class NewInvite(msgspec.Struct, forbid_unknown_fields=True):
    uses: int = 1
    #: seconds until it expires; None: never
    expires_in: float | None = None
    note: str = ""
    #: only this username may sign up with it
    username: str | None = None


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


@get("/users", media_type="application/json")
async def users(admin: Admin) -> bytes:
    return _json(await admin.users())


@post("/users/{username:str}/disable", media_type="application/json", status_code=200)
async def disable(admin: Admin, username: FromPath[str]) -> bytes:
    return _json(await admin.disable(username))


@post("/users/{username:str}/enable", media_type="application/json", status_code=200)
async def enable(admin: Admin, username: FromPath[str]) -> bytes:
    return _json(await admin.enable(username))


@delete("/users/{username:str}", media_type="application/json", status_code=200)
async def remove(admin: Admin, username: FromPath[str]) -> bytes:
    return _json(await admin.remove(username))


@get("/users/{username:str}/devices", media_type="application/json")
async def devices(admin: Admin, username: FromPath[str]) -> bytes:
    return _json(await admin.devices(username))


@delete("/users/{username:str}/devices/{device_id:int}", status_code=204)
async def remove_device(admin: Admin, username: FromPath[str], device_id: FromPath[int]) -> None:
    await admin.remove_device(username, device_id)


@post("/invites", media_type="application/json", status_code=201)
async def create_invite(admin: Admin, request: Request[object, object, State]) -> bytes:
    try:
        body = msgspec.json.decode(await request.body(), type=NewInvite)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Refused(ErrorCode.BAD_FRAME, str(exc)) from exc
    row, token = await admin.create_invite(body.uses, body.expires_in, body.note, body.username)
    return _json({"invite": row, "token": token})


@get("/invites", media_type="application/json")
async def invites(admin: Admin) -> bytes:
    return _json(await admin.invites())


@delete("/invites/{invite_id:str}", status_code=204)
async def revoke_invite(admin: Admin, invite_id: FromPath[str]) -> None:
    await admin.revoke_invite(invite_id)


@get("/stats", media_type="application/json")
async def stats(admin: Admin) -> bytes:
    return _json(await admin.stats())


HANDLERS = [
    users, disable, enable, remove, devices, remove_device, create_invite, invites,
    revoke_invite, stats,
]  # fmt: skip


def admin_app(service: AdminService, exception_handlers: ExceptionHandlersMap) -> Litestar:
    return Litestar(
        route_handlers=HANDLERS,
        dependencies={"admin": Provide(lambda: service, use_cache=True, sync_to_thread=False)},
        exception_handlers=exception_handlers,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
