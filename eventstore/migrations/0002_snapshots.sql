-- Snapshots of aggregate state, so that loading a long stream (a product's stock moves with
-- every order) reads one row and the few events after it. Derived data: safe to delete.
CREATE TABLE eventgraph.snapshots (
    stream_id       text        PRIMARY KEY,
    stream_version  integer     NOT NULL,
    state_type      text        NOT NULL,
    state           jsonb       NOT NULL,
    taken_at        timestamptz NOT NULL DEFAULT now()
);
