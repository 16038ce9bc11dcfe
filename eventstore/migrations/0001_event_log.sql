-- The event log. `position` is taken from a sequence at insert, so positions do not
-- follow commit order when writers are concurrent; readers therefore never pass a hole
-- in the positions until it is proven permanent (see eventstore/frontier.py).
CREATE TABLE eventgraph.events (
    position        bigserial PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version > 0),
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_type_position_idx ON eventgraph.events (type, position);

-- A command's idempotency key and the result of its first append, written in the same
-- transaction as the events.
CREATE TABLE eventgraph.idempotency_keys (
    key         text        PRIMARY KEY,
    positions   bigint[]    NOT NULL,
    streams     text[]      NOT NULL,
    versions    integer[]   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Appends events to one or more streams in one statement: one round trip, one implicit
-- transaction (or the caller's). p_streams/p_expected give each stream's expected version:
-- -1 "any", 0 "no stream yet", n > 0 exactly n. The p_event_* arrays hold one entry per event,
-- in order. Returns each event's position, and each stream's version after the append.
--
-- The transaction id is taken before any position is drawn from the sequence. Readers rely on
-- this (eventstore/frontier.py): whoever holds a missing position already had a transaction id
-- when the hole was seen, so once every transaction below that snapshot's xmax has ended, the
-- hole is either filled or permanent.
CREATE FUNCTION eventgraph.append_events(
    p_streams text[], p_expected bigint[], p_idempotency_key text,
    p_event_ids uuid[], p_stream_ids text[], p_types text[], p_schema_versions integer[],
    p_data text[], p_metadata text[], p_occurred_at timestamptz[],
    OUT positions bigint[], OUT streams text[], OUT versions integer[], OUT replayed boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_current integer;
    v_event_versions integer[];
    i integer;
    j integer;
BEGIN
    PERFORM pg_current_xact_id();

    IF p_idempotency_key IS NOT NULL THEN
        SELECT k.positions, k.streams, k.versions INTO positions, streams, versions
          FROM eventgraph.idempotency_keys k WHERE k.key = p_idempotency_key;
        IF FOUND THEN
            replayed := true;
            RETURN;
        END IF;
    END IF;

    versions := p_expected::integer[];
    FOR i IN 1 .. array_length(p_streams, 1) LOOP
        SELECT coalesce(max(e.stream_version), 0) INTO v_current
          FROM eventgraph.events e WHERE e.stream_id = p_streams[i];
        IF p_expected[i] >= 0 AND v_current <> p_expected[i] THEN
            RAISE EXCEPTION 'stream % is at version %, expected %',
                p_streams[i], v_current, p_expected[i]
                USING ERRCODE = 'EG409', DETAIL = p_streams[i];
        END IF;
        versions[i] := v_current;
    END LOOP;

    v_event_versions := array_fill(0, ARRAY[array_length(p_stream_ids, 1)]);
    FOR j IN 1 .. array_length(p_stream_ids, 1) LOOP
        i := array_position(p_streams, p_stream_ids[j]);
        versions[i] := versions[i] + 1;
        v_event_versions[j] := versions[i];
    END LOOP;

    WITH inserted AS (
        INSERT INTO eventgraph.events
            (event_id, stream_id, stream_version, type, schema_version, data, metadata, occurred_at)
        SELECT * FROM unnest(p_event_ids, p_stream_ids, v_event_versions, p_types,
                             p_schema_versions, p_data::jsonb[], p_metadata::jsonb[], p_occurred_at)
        RETURNING position
    )
    SELECT array_agg(position ORDER BY position) INTO positions FROM inserted;
    streams := p_streams;
    replayed := false;

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO eventgraph.idempotency_keys (key, positions, streams, versions)
        VALUES (p_idempotency_key, positions, streams, versions);
    END IF;
END;
$$;
