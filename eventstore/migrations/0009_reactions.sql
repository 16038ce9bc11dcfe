-- Reactions (application/reactions.py): each follows the log from its own checkpoint and
-- keeps durable timers, both here beside the log (the command side), written in one
-- transaction. A fired timer's effect is a command with an idempotency key derived from the
-- timer, so firing one again after a crash finds its first result instead of repeating it.
CREATE TABLE eventgraph.reactions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'failed')),
    error text,
    failed_position bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE eventgraph.timers (
    reaction text NOT NULL REFERENCES eventgraph.reactions (name),
    key text NOT NULL,
    due_at timestamptz NOT NULL,
    data jsonb NOT NULL,
    scheduled_at bigint NOT NULL,  -- the position of the event that (re)scheduled it
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    PRIMARY KEY (reaction, key)
);

-- Due timers, oldest first.
CREATE INDEX timers_due_idx ON eventgraph.timers (reaction, due_at, key);
