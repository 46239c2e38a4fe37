-- Version 7: who may add an account to a group (PUT /v1/settings): 'everyone', or 'contacts'
-- only, the accounts it shares a direct conversation with in which it has sent a message.
ALTER TABLE accounts ADD COLUMN group_adds TEXT NOT NULL DEFAULT 'everyone'
    CHECK (group_adds IN ('everyone', 'contacts'));
