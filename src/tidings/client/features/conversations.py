"""The part of :class:`~tidings.client.Client` about conversations (a mixin): the chat list,
direct chats and groups, their members as the server has them, and who may add this account
to a group. Every change of a member list reaches the engine (which sends only to members)
and the end-to-end layer (a removed member gets no key to what follows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.protocol import rest, routes

from ..errors import ClientError, ConnectionEnded, ServerRefused
from ..types import ClientEvent, Conversation, ConversationUpdated

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..core.sealing import EndToEnd
    from ..push import PushState
    from ..rest import Rest
    from ..runtime import Runtime
    from ..store import LocalStore


class ConversationFeatures:
    """Mixed into :class:`~tidings.client.Client`."""

    if TYPE_CHECKING:
        _store: LocalStore
        _rest: Rest
        _engine: Engine
        _e2ee: EndToEnd
        _runtime: Runtime
        _push: PushState

        def _check_open(self) -> None: ...
        def _emit(self, event: ClientEvent) -> None: ...
        def _emit_conversation(self, conv_id: str) -> None: ...

    async def conversations(self) -> list[Conversation]:
        """Conversations I am a member of, newest activity first."""
        return self._store.conversations()

    async def conversation(self, conv_id: str) -> Conversation:
        found = self._store.conversation(conv_id)
        if found is None:
            conv = await self._rest.call(routes.CONVERSATION, rest.Conversation, conv=conv_id)
            self._save(conv)
            found = self._store.conversation(conv_id)
        if found is None:
            raise ClientError("not_found", "no such conversation")
        return found

    async def open_direct(self, username: str) -> Conversation:
        """The direct conversation with ``username``, created on the server if needed."""
        self._check_open()
        body = rest.CreateDirect(username=username)
        conv = await self._rest.call(routes.CREATE_DIRECT, rest.Conversation, body)
        return self._save(conv)

    async def create_group(self, title: str, usernames: Sequence[str]) -> Conversation:
        self._check_open()
        body = rest.CreateGroup(title=title, members=list(usernames))
        return self._save(await self._rest.call(routes.CREATE_GROUP, rest.Conversation, body))

    async def add_members(self, conv_id: str, usernames: Sequence[str]) -> Conversation:
        self._check_open()
        body = rest.AddMembers(usernames=list(usernames))
        conv = await self._rest.call(routes.ADD_MEMBERS, rest.Conversation, body, conv=conv_id)
        return self._save(conv)

    async def remove_member(self, conv_id: str, username: str) -> Conversation:
        self._check_open()
        conv = await self._rest.call(
            routes.REMOVE_MEMBER, rest.Conversation, conv=conv_id, username=username
        )
        self._e2ee.rotate(conv_id)  # the removed member must not read what follows
        return self._save(conv)

    async def leave_group(self, conv_id: str) -> None:
        self._check_open()
        await self._rest.send(routes.LEAVE_GROUP, conv=conv_id)
        self._e2ee.rotate(conv_id)
        self._store.left_conversation(conv_id)
        self._engine.members_changed(conv_id, frozenset())
        await self._runtime.flush()
        self._emit_conversation(conv_id)

    async def group_adds(self) -> rest.GroupAdds:
        """Who may add this account to a group: ``everyone`` or ``contacts`` (the accounts it
        shares a direct conversation with in which it has sent a message)."""
        self._check_open()
        return (await self._rest.call(routes.SETTINGS, rest.AccountSettings)).group_adds

    async def set_group_adds(self, who: rest.GroupAdds) -> rest.GroupAdds:
        """Let ``everyone`` or only ``contacts`` add this account to groups; others adding it
        get ``forbidden``. Returns the setting in force."""
        self._check_open()
        body = rest.UpdateSettings(group_adds=who)
        return (
            await self._rest.call(routes.UPDATE_SETTINGS, rest.AccountSettings, body)
        ).group_adds

    def _save(self, conv: rest.Conversation) -> Conversation:
        members = self._store.save_conversation(conv)
        self._push.saved(conv)
        self._engine.members_changed(conv.id, members)
        self._e2ee.set_members(conv.id, members)
        self._runtime.wake()  # promotions the new member list allows
        found = self._store.conversation(conv.id)
        assert found is not None  # just saved
        self._emit(ConversationUpdated(found))
        return found

    async def _refresh(self, conv_id: str) -> None:
        """Reload one conversation's info and members from the server (for the engine's
        RefreshConversation; failures are reported to the engine, never raised)."""
        try:
            self._check_open()
            conv = await self._rest.call(routes.CONVERSATION, rest.Conversation, conv=conv_id)
        except ConnectionEnded:
            return  # the engine knows: nothing will be refreshed any more
        except ServerRefused as exc:
            if exc.status in (403, 404):  # removed, or it never was ours
                self._store.left_conversation(conv_id)
                self._engine.members_changed(conv_id, frozenset())
                self._emit_conversation(conv_id)
            else:
                self._engine.refresh_failed(conv_id)
            return
        except ClientError:
            self._engine.refresh_failed(conv_id)
            return
        self._save(conv)

    async def refresh_all(self) -> None:
        """Reload every conversation's info and members from the server (one request)."""
        self._check_open()
        for conv in await self._rest.call(routes.CONVERSATIONS, list[rest.Conversation]):
            self._save(conv)

    async def _members_of(self, conv_id: str) -> tuple[str, frozenset[str]]:
        """(kind, member account ids) of a conversation, for encrypting to it."""
        found = self._store.conversation(conv_id)
        if found is None or not found.members:
            found = await self.conversation(conv_id)
            if not found.members:
                await self._refresh(conv_id)
                found = self._store.conversation(conv_id) or found
        return found.kind, frozenset(m.account_id for m in found.members)
