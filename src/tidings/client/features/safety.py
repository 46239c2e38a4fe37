"""The part of :class:`~tidings.client.Client` about safety numbers (a mixin): the number
shared with a contact, online or from the stored key, and marking a contact verified
(docs/e2ee.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidings.protocol import rest, routes

from ..errors import ClientError, NotConnected

if TYPE_CHECKING:
    from ..core.sealing import EndToEnd
    from ..rest import Rest
    from ..runtime import Runtime
    from ..store import LocalStore
    from ..types import Account


@dataclass(frozen=True)
class SafetyNumber:
    """What :meth:`Client.safety` knows about the safety number shared with ``username``."""

    username: str
    number: str
    verified: bool
    #: when the contact's identity key was last fetched from the server (ms), if known
    checked_at: int | None
    #: False: the server could not be reached and this is the stored key's number
    online: bool


class SafetyFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        account: Account
        _store: LocalStore
        _rest: Rest
        _runtime: Runtime
        _e2ee: EndToEnd

        def _check_open(self) -> None: ...

    async def safety(self, username: str) -> SafetyNumber:
        """The safety number shared with ``username``, refreshed from the server when it can
        be reached; offline, the number of the identity key stored for them, with when it
        was last fetched from the server (``checked_at``). Raises :class:`NotConnected` when
        offline and no key is stored for them."""
        self._check_open()
        username = username.removeprefix("@")
        try:
            number = await self.safety_number(username)
            online = True
        except NotConnected:
            account_id = self._store.account_id_of(username)
            if account_id is None or self._store.keys.known_identity(account_id) is None:
                raise
            number, online = self._e2ee.safety_number(account_id), False
        else:
            account_id = self._store.account_id_of(username) or await self._account_id(username)
        known = self._store.keys.known_identity(account_id)
        verified = known is not None and known.verified
        checked_at = None if known is None else known.checked_at
        return SafetyNumber(username, number, verified, checked_at, online)

    async def safety_number(self, username: str) -> str:
        """The 60-digit safety number shared with ``username`` (the same on both sides and on
        every device of either account; libsignal's numeric fingerprint, 5200 iterations)."""
        account_id = await self._account_id(username)
        await self._runtime.drive(self._e2ee.learn_identity(account_id))
        return self._e2ee.safety_number(account_id)

    async def verify(self, username: str) -> None:
        """Mark ``username``'s current identity key as verified (safety numbers compared).
        Should it change later, sending to them stops until they are verified again."""
        account_id = await self._account_id(username)
        await self._runtime.drive(self._e2ee.learn_identity(account_id))
        self._store.keys.set_verified(account_id, True)

    async def unverify(self, username: str) -> None:
        """Take a verification back (a changed key then no longer stops sending)."""
        self._store.keys.set_verified(await self._account_id(username), False)

    async def is_verified(self, username: str) -> bool:
        known = self._store.keys.known_identity(await self._account_id(username))
        return known is not None and known.verified

    async def _account_id(self, username: str) -> str:
        self._check_open()
        username = username.removeprefix("@")
        if username == self.account.username:
            raise ClientError("not_available", "a safety number is shared with someone else")
        user = await self._rest.call(routes.USER, rest.User, username=username)
        return user.account_id
