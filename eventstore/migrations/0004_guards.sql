-- The log is append-only, enforced by the database itself: no role, the owner included, can
-- UPDATE, DELETE or TRUNCATE an event while these triggers stand. Only the table's owner (or
-- a superuser) could drop or disable them, deliberately, in a statement of its own. Parked
-- events are a record of operators' decisions, kept the same way.
CREATE FUNCTION eventgraph.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

REVOKE UPDATE, DELETE, TRUNCATE ON eventgraph.events FROM PUBLIC;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON eventgraph.events
    FOR EACH ROW EXECUTE FUNCTION eventgraph.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON eventgraph.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventgraph.refuse_change();

-- An idempotency key remembers which command, with which arguments, it was first used for:
-- the same key for anything else is a CONFLICT, never a silent replay of the first result.
-- Keys stored before this migration have none and replay as before.
ALTER TABLE eventgraph.idempotency_keys ADD COLUMN fingerprint text;

-- As in 0001, plus p_fingerprint, stored with the key and returned on a replay. The version
-- of 0001 stays, so that processes of the previous version keep appending during a rolling
-- upgrade.
CREATE FUNCTION eventgraph.append_events(
    p_streams text[], p_expected bigint[], p_idempotency_key text, p_fingerprint text,
    p_event_ids uuid[], p_stream_ids text[], p_types text[], p_schema_versions integer[],
    p_data text[], p_metadata text[], p_occurred_at timestamptz[],
    OUT positions bigint[], OUT streams text[], OUT versions integer[], OUT replayed boolean,
    OUT stored_fingerprint text
) LANGUAGE plpgsql AS $$
DECLARE
    v_current integer;
    v_event_versions integer[];
    i integer;
    j integer;
BEGIN
    PERFORM pg_current_xact_id();

    IF p_idempotency_key IS NOT NULL THEN
        SELECT k.positions, k.streams, k.versions, k.fingerprint
          INTO positions, streams, versions, stored_fingerprint
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
    stored_fingerprint := p_fingerprint;

    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO eventgraph.idempotency_keys (key, positions, streams, versions, fingerprint)
        VALUES (p_idempotency_key, positions, streams, versions, p_fingerprint);
    END IF;
END;
$$;

-- A projection that meets an event it cannot apply stops there (status 'failed'), and says
-- which event. An operator may then park that one event for that one projection: a recorded
-- decision, which the projector and every rebuild of that projection honour, and /readyz lists.
ALTER TABLE eventgraph.projections ADD COLUMN failed_position bigint;

-- A projection stopped by the previous version (which could store an order id that the
-- projections could not look up) is tried again: it now reads canonical ids, and if it
-- still cannot apply an event, it stops again, this time saying which.
UPDATE eventgraph.projections SET status = 'running', error = NULL WHERE status = 'failed';

CREATE TABLE eventgraph.parked_events (
    projection  text        NOT NULL,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    stream_id   text        NOT NULL,
    error       text,
    reason      text        NOT NULL,
    parked_by   text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);

CREATE TRIGGER parked_events_kept BEFORE UPDATE OR DELETE ON eventgraph.parked_events
    FOR EACH ROW EXECUTE FUNCTION eventgraph.refuse_change();
