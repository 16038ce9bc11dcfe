-- Projections: each one's active generation of read-model tables and its checkpoint. The
-- checkpoint moves in the same transaction as the read-model writes, so a batch is applied
-- exactly once. Readers query the views in schema `readmodel`, which point at the active
-- generation; a rebuild fills a new generation and swaps the views in one transaction.
CREATE TABLE eventgraph.projections (
    name        text        PRIMARY KEY,
    version     integer     NOT NULL,
    generation  integer     NOT NULL,
    position    bigint      NOT NULL DEFAULT 0,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'failed')),
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS readmodel;
