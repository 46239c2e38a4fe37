-- Version 4: message ids are unique across senders. Ids are client-made UUIDs; without this a
-- member could reuse another member's message id and make a recipient's client, which keys
-- messages by id, drop the real message as a duplicate.
CREATE INDEX envelopes_by_id ON envelopes (id);
