-- Personal data keys (eventstore/personal.py): one data key per person ("subject", a
-- customer id), wrapped by the master key (EVENTGRAPH_MASTER_KEY). The personal fields of an
-- event are encrypted with it; forgetting a person deletes the row, after which those fields
-- can never be read again (crypto-shredding). Kept beside the log, never on the read side.
CREATE TABLE eventgraph.personal_keys (
    subject text PRIMARY KEY CHECK (length(subject) BETWEEN 1 AND 200),
    key_id uuid NOT NULL UNIQUE,       -- named in every envelope sealed with this key
    wrapped bytea NOT NULL,            -- nonce || AES-256-GCM(master key, data key)
    master_id text NOT NULL,           -- which master key wrapped it (a fingerprint)
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The streams about a customer, for the right of access (application/customers.py export):
-- only the events that name their customer, so an append of anything else pays nothing.
CREATE INDEX events_customer_idx ON eventgraph.events ((data->>'customerId'))
 WHERE type IN ('OrderPlaced', 'ReviewPosted', 'WishlistItemAdded');
