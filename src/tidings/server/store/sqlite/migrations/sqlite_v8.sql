-- Version 8: one index on the message id instead of two. envelopes_by_client_id (sender, id)
-- kept one message per (sender, client id); envelopes_by_id (id) found an id whoever sent it.
-- Both are keyed on a random UUID, so every stored message dirtied a random page of each. One
-- unique index on (id, sender) does both jobs: the same pairs are unique, and a lookup by id
-- reads its prefix (the envelope's primary key comes with every entry).
DROP INDEX envelopes_by_id;
DROP INDEX envelopes_by_client_id;
CREATE UNIQUE INDEX envelopes_by_id ON envelopes (id, sender);
