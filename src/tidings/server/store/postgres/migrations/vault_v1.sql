-- The history vault, component "vault", version 1 (as sqlite/migrations/vault_v1.sql).
CREATE TABLE vault_keys (
    account_id     TEXT PRIMARY KEY REFERENCES accounts (id),
    wrapped        BYTEA NOT NULL,
    params         BYTEA NOT NULL,
    verifier       BYTEA NOT NULL,
    failures       INTEGER NOT NULL DEFAULT 0,
    blocked_until  BIGINT NOT NULL DEFAULT 0,
    last_failure   BIGINT NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL
);
CREATE TABLE vault_pages (
    account_id  TEXT NOT NULL,
    page_id     TEXT COLLATE "C" NOT NULL,
    generation  BIGINT NOT NULL,
    sealed      BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, page_id)
);
CREATE TABLE vault_tickets (
    ticket_hash  BYTEA PRIMARY KEY,
    account_id   TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    device_id    INTEGER,
    token_key    TEXT
);
