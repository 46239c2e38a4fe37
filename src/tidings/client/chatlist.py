"""The chat list: conversations with their members, last message and unread count.

What the app shows first at start, so it is read in a few set-based queries whatever the size
of the history: one for the conversations (each one's last message found through the
``(conv_id, ord)`` index, its unread count through the partial index ``messages_unread``, which
holds only others' texts), one for every member, one batch for the last messages. Nothing here
scans messages or touches the search index, and nothing is kept on the side that could drift
from the messages themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import channel_store
from .queries import SELECT_MESSAGE
from .types import Conversation, Member, Message

if TYPE_CHECKING:
    from .store import LocalStore

#: the title of the conversation with only this account's own devices
NOTE_TO_SELF = "Note to Self"

#: each conversation with its newest message (pk) and its unread count; the unread condition
#: spells out the partial index's so that SQLite counts from it alone
CONVERSATIONS = """
    SELECT c.id, c.kind, c.title, c.last_activity, c.read_upto,
           (SELECT m.pk FROM messages m WHERE m.conv_id = c.id ORDER BY m.ord DESC LIMIT 1),
           (SELECT count(*) FROM messages m WHERE m.conv_id = c.id AND m.seq > c.read_upto
                AND m.is_own = 0 AND m.kind = 'text')
    FROM conversations c
"""

#: a member's display name: the profile name, else the username (the ``display_names`` view,
#: joined directly: SQLite materializes a view with a join on the right of a LEFT JOIN)
MEMBERS = """
    SELECT m.conv_id, m.account_id, u.username, m.role,
           COALESCE(NULLIF(p.name, ''), u.username, m.account_id)
    FROM members m
    LEFT JOIN users u ON u.account_id = m.account_id
    LEFT JOIN profiles p ON p.account_id = u.account_id
"""


def conversations(store: LocalStore) -> list[Conversation]:
    """Conversations this account is a member of, newest activity first."""
    rows = store.db.execute(
        CONVERSATIONS + " WHERE c.is_member = 1 ORDER BY c.last_activity DESC, c.id"
    ).fetchall()
    members = _members(
        store, " WHERE m.conv_id IN (SELECT id FROM conversations WHERE is_member = 1)", ()
    )
    return _build(store, rows, members)


def conversation(store: LocalStore, conv_id: str) -> Conversation | None:
    rows = store.db.execute(CONVERSATIONS + " WHERE c.id = ?", (conv_id,)).fetchall()
    if not rows:
        return None
    return _build(store, rows, _members(store, " WHERE m.conv_id = ?", (conv_id,)))[0]


def members(store: LocalStore, conv_id: str) -> tuple[Member, ...]:
    return _members(store, " WHERE m.conv_id = ?", (conv_id,)).get(conv_id, ())


def _members(
    store: LocalStore, where: str, params: tuple[str, ...]
) -> dict[str, tuple[Member, ...]]:
    found: dict[str, list[tuple[tuple[str, bool, str], Member]]] = {}
    for conv_id, account, username, role, name in store.db.execute(MEMBERS + where, params):
        # ordered by role, then username (SQLite's order: an unknown username, NULL, first)
        order = (role, username is not None, username or "")
        member = Member(account, username or account, role, name)
        found.setdefault(conv_id, []).append((order, member))
    return {
        conv_id: tuple(m for _, m in sorted(rows, key=lambda r: r[0]))
        for conv_id, rows in found.items()
    }


def _build(
    store: LocalStore,
    rows: list[tuple[str, str, str, int, int, int | None, int]],
    members: dict[str, tuple[Member, ...]],
) -> list[Conversation]:
    last = _last_messages(store, [row[5] for row in rows if row[5] is not None])
    built = []
    for conv_id, kind, title, last_activity, _, last_pk, unread in rows:
        people = members.get(conv_id, ())
        note_to_self = kind == "direct" and bool(people)
        if kind == "direct":
            peers = [m.name or m.username for m in people if m.account_id != store.account_id]
            title = peers[0] if peers else NOTE_TO_SELF if note_to_self else title
            note_to_self = not peers and note_to_self
        me = [m for m in people if m.account_id == store.account_id]
        conv = Conversation(
            id=conv_id,
            kind=kind,
            title=title,
            members=people,
            last_message=None if last_pk is None else last.get(last_pk),
            last_activity=last_activity,
            unread=unread,
            is_admin=bool(me) and me[0].role == "admin",
            note_to_self=note_to_self,
        )
        built.append(channel_store.with_channel(store.db, conv))
    return built


def _last_messages(store: LocalStore, pks: list[int]) -> dict[int, Message]:
    """The messages with these rowids, built as every message is (one batch of queries)."""
    found: dict[int, Message] = {}
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = store.db.execute(SELECT_MESSAGE + f" WHERE m.pk IN ({marks})", chunk).fetchall()
        pk_of = {str(r[0]): int(r[16]) for r in rows}
        for message in store.build_messages(rows):
            found[pk_of[message.id.hex]] = message
    return found
