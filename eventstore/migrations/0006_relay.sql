-- How far each relay (events published to another system, e.g. RabbitMQ) has had its
-- publications confirmed: it advances only after the broker confirmed every event up to it,
-- so a relay that restarts publishes again from here (duplicates possible, never a gap).
CREATE TABLE eventgraph.relay_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
