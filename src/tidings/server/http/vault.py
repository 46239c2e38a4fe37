"""The history vault: enrolment, params by username, recovery, passphrase change, pages
(tidings.server.vault; the bodies are tidings.protocol.vault's)."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.protocol import ErrorCode, routes
from tidings.protocol import vault as wire
from tidings.server.delivery import Device
from tidings.server.http.common import (
    HttpRequest,
    Injected,
    client_address,
    decode_body,
    endpoint,
    to_json,
)
from tidings.server.store import Refused
from tidings.server.vault.service import VaultService

#: a page upload carries up to a few sealed pages, base64 in JSON
PAGES_BODY_BYTES = 8 * 1024 * 1024


def _service(vault: VaultService | None) -> VaultService:
    if vault is None:
        raise Refused(ErrorCode.NOT_FOUND, "this server keeps no vaults")
    return vault


@endpoint(routes.VAULT_STATUS)
async def vault_status(caller: Injected[Device], vault: Injected[VaultService | None]) -> bytes:
    return to_json(await _service(vault).status(caller.account_id))


@endpoint(routes.VAULT_ENROL)
async def vault_enrol(
    request: HttpRequest, caller: Injected[Device], vault: Injected[VaultService | None]
) -> bytes:
    body = await decode_body(request, wire.VaultEnrol)
    return to_json(await _service(vault).enrol(caller.account_id, body))


@endpoint(routes.VAULT_PARAMS)
async def vault_params(vault: Injected[VaultService | None], username: FromPath[str]) -> bytes:
    return to_json(await _service(vault).params(username))


@endpoint(routes.VAULT_RECOVER)
async def vault_recover(request: HttpRequest, vault: Injected[VaultService | None]) -> bytes:
    body = await decode_body(request, wire.VaultProof)
    return to_json(await _service(vault).recover(client_address(request), body))


@endpoint(routes.VAULT_REGISTER)
async def vault_register(request: HttpRequest, vault: Injected[VaultService | None]) -> bytes:
    body = await decode_body(request, wire.RecoverDevice)
    return to_json(await _service(vault).register(body))


@endpoint(routes.VAULT_PASSPHRASE)
async def vault_passphrase(
    request: HttpRequest, caller: Injected[Device], vault: Injected[VaultService | None]
) -> bytes:
    body = await decode_body(request, wire.ChangePassphrase)
    return to_json(await _service(vault).change_passphrase(caller.account_id, body))


@endpoint(routes.VAULT_PUT_PAGES, request_max_body_size=PAGES_BODY_BYTES)
async def vault_put_pages(
    request: HttpRequest, caller: Injected[Device], vault: Injected[VaultService | None]
) -> bytes:
    body = await decode_body(request, wire.VaultPages)
    return to_json(await _service(vault).put_pages(caller.account_id, body))


@endpoint(routes.VAULT_LIST_PAGES)
async def vault_list_pages(caller: Injected[Device], vault: Injected[VaultService | None]) -> bytes:
    return to_json(await _service(vault).list_pages(caller.account_id))


@endpoint(routes.VAULT_FETCH_PAGES)
async def vault_fetch_pages(
    request: HttpRequest, caller: Injected[Device], vault: Injected[VaultService | None]
) -> bytes:
    body = await decode_body(request, wire.FetchPages)
    return to_json(await _service(vault).fetch_pages(caller.account_id, body))


@endpoint(routes.VAULT_RESET)
async def vault_reset(caller: Injected[Device], vault: Injected[VaultService | None]) -> bytes:
    return to_json(await _service(vault).reset(caller.account_id))


HANDLERS: list[HTTPRouteHandler] = [
    vault_status,
    vault_enrol,
    vault_params,
    vault_recover,
    vault_register,
    vault_passphrase,
    vault_put_pages,
    vault_list_pages,
    vault_fetch_pages,
    vault_reset,
]
