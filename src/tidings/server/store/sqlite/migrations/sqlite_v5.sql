-- Version 5: retried device linking converges on one device. A new device may choose its
-- provisioning secret and its token (key and SHA-256 of the secret, never the token itself)
-- before its first request: a retried request finds its row by ephemeral key, the approval
-- makes the device with that token, and a fetched result stays (fetched = 1) until it expires
-- so a fetch whose answer was lost can be repeated.
ALTER TABLE provisioning ADD COLUMN token_key TEXT;
ALTER TABLE provisioning ADD COLUMN token_hash BLOB;
ALTER TABLE provisioning ADD COLUMN fetched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX provisioning_by_key ON provisioning (ephemeral_key);
