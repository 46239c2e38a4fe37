-- The history vault: per account a wrapped vault key, its public KDF params, a verifier of
-- the recovery credential and the failed-proof counter; sealed pages; one-time recovery tickets.
CREATE TABLE vault_keys (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    wrapped BLOB NOT NULL,
    params BLOB NOT NULL,
    verifier BLOB NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    blocked_until INTEGER NOT NULL DEFAULT 0,
    last_failure INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE TABLE vault_pages (
    account_id TEXT NOT NULL,
    page_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    size INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, page_id)
) WITHOUT ROWID;
CREATE TABLE vault_tickets (
    ticket_hash BLOB PRIMARY KEY,
    account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    device_id INTEGER,
    token_key TEXT
);
