-- Which transaction (so which append) wrote each event, so that a projector never ends a
-- batch inside one append: a read model's position then never shows half a command.
-- Events written before this migration have none, and count as appends of their own.
ALTER TABLE eventgraph.events ADD COLUMN transaction_id xid8;
ALTER TABLE eventgraph.events ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
