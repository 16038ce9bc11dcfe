-- Parked events are a record of operators' decisions, append-only like the log (0004). 0004
-- refused UPDATE and DELETE row by row; TRUNCATE fires no row trigger, so it emptied the
-- record. A statement trigger refuses it too, for every role, the owner included.
REVOKE UPDATE, DELETE, TRUNCATE ON eventgraph.parked_events FROM PUBLIC;

CREATE TRIGGER parked_events_no_truncate BEFORE TRUNCATE ON eventgraph.parked_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventgraph.refuse_change();
