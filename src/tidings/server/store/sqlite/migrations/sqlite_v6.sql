-- Version 6: storage bounds (docs/architecture.md, "Queues"). An account's stored envelope
-- bytes are counted as they are stored and dropped; envelopes every member device has acked
-- lose their body (the row stays, for idempotent resends and receipts, until the retention
-- period ends), envelopes past the retention period go entirely.

-- bytes of envelopes this account sent that the server still holds (its quota counter)
ALTER TABLE accounts ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
-- bytes charged to the sender for this message: payload, mentions and the per-device
-- ciphertexts sent with it; 0 for system envelopes and once the body is dropped
ALTER TABLE envelopes ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
-- 1 once every member device acked it and its body was dropped
ALTER TABLE envelopes ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
-- seqs up to this one were looked at by the collector: acked by all, or gone
ALTER TABLE conversations ADD COLUMN collected_seq INTEGER NOT NULL DEFAULT 0;
-- which devices still wait for a seq of a conversation
CREATE INDEX pending_by_conv ON pending (conv_id, seq);

UPDATE envelopes SET size = length(payload) + coalesce(length(mentions), 0) + coalesce((
    SELECT sum(length(p.payload)) FROM pending p
    WHERE p.conv_id = envelopes.conv_id AND p.seq = envelopes.seq), 0)
WHERE kind = 'msg';
UPDATE accounts SET stored_bytes = coalesce((
    SELECT sum(e.size) FROM envelopes e WHERE e.sender = accounts.id), 0);
