"""SQL the local store and the chat list share: how a message row is read.

Names come from ``users`` and ``profiles`` joined directly rather than through the
``display_names`` view: on the right of a LEFT JOIN SQLite cannot flatten a view that is itself
a join, and would build the whole view (every known account) for each query.
"""

from __future__ import annotations

#: a message row: what :meth:`~tidings.client.store.LocalStore.build_messages` reads (column
#: 14 is the page cursor ``ord``, 16 the rowid, 17 and 18 the edit flags)
SELECT_MESSAGE = """
    SELECT m.id, m.conv_id, m.seq, m.sender_id,
           COALESCE(NULLIF(p.name, ''), u.username, m.sender_id), m.is_own,
           m.kind, m.body, m.meta, m.reply_to, m.status, m.fail_reason, m.created_at,
           COALESCE(c.read_upto, 0), m.ord, m.mentions_me, m.pk, m.edited_at, m.deleted
    FROM messages m
    LEFT JOIN conversations c ON c.id = m.conv_id
    LEFT JOIN users u ON u.account_id = m.sender_id
    LEFT JOIN profiles p ON p.account_id = u.account_id
"""

#: a display name for the account id in column ``{0}``: its profile name, else its username,
#: else the id itself (as the ``display_names`` view says, without building it)
DISPLAY_NAME = (
    "COALESCE((SELECT COALESCE(NULLIF(p.name, ''), u.username) FROM users u"
    " LEFT JOIN profiles p ON p.account_id = u.account_id WHERE u.account_id = {0}), {0})"
)
