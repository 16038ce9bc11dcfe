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
    result      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch of events to one or more streams in one statement (so one round trip and
-- one implicit transaction). p_streams/p_expected give each stream's expected version:
-- -1 "any", 0 "no stream yet", n > 0 exactly n. p_events is a JSON array of
-- {event_id, stream_id, type, schema_version, data, metadata, occurred_at} in order.
--
-- The transaction id is taken before any position is drawn from the sequence. A reader that
-- sees a hole in the positions relies on this: whoever holds the missing position already had
-- a transaction id when the hole was seen, so once every transaction older than that snapshot's
-- xmax has ended, the hole is either filled or permanent.
CREATE FUNCTION eventgraph.append_events(
    p_streams text[], p_expected bigint[], p_events jsonb, p_idempotency_key text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_prior jsonb;
    v_current integer;
    v_versions jsonb := '{}'::jsonb;
    v_result jsonb;
    i integer;
BEGIN
    PERFORM pg_current_xact_id();

    IF p_idempotency_key IS NOT NULL THEN
        SELECT result INTO v_prior FROM eventgraph.idempotency_keys WHERE key = p_idempotency_key;
        IF FOUND THEN
            RETURN v_prior || jsonb_build_object('replayed', true);
        END IF;
    END IF;

    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        SELECT coalesce(max(stream_version), 0) INTO v_current
          FROM eventgraph.events WHERE stream_id = p_streams[i];
        IF p_expected[i] >= 0 AND v_current <> p_expected[i] THEN
            RAISE EXCEPTION 'stream % is at version %, expected %',
                p_streams[i], v_current, p_expected[i]
                USING ERRCODE = 'EG409', DETAIL = p_streams[i];
        END IF;
        v_versions := v_versions || jsonb_build_object(p_streams[i], v_current);
    END LOOP;

    WITH input AS (
        SELECT e.ordinality AS n, e.value AS ev
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e
    ), numbered AS (
        SELECT n, ev,
               (v_versions ->> (ev ->> 'stream_id'))::integer
                 + row_number() OVER (PARTITION BY ev ->> 'stream_id' ORDER BY n) AS version
          FROM input
    ), inserted AS (
        INSERT INTO eventgraph.events
            (event_id, stream_id, stream_version, type, schema_version, data, metadata, occurred_at)
        SELECT (ev ->> 'event_id')::uuid, ev ->> 'stream_id', version, ev ->> 'type',
               (ev ->> 'schema_version')::integer, ev -> 'data', ev -> 'metadata',
               (ev ->> 'occurred_at')::timestamptz
          FROM numbered ORDER BY n
        RETURNING position, stream_id, stream_version
    )
    SELECT jsonb_build_object(
               'positions', jsonb_agg(position ORDER BY position),
               'versions', jsonb_object_agg(stream_id, stream_version)
           )
      INTO v_result
      FROM (SELECT position, stream_id, max(stream_version) OVER (PARTITION BY stream_id)
                   AS stream_version FROM inserted) AS r;

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO eventgraph.idempotency_keys (key, result) VALUES (p_idempotency_key, v_result);
    END IF;
    RETURN v_result || jsonb_build_object('replayed', false);
END;
$$;
