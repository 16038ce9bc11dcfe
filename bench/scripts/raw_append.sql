-- pgbench: one event of the log's shape per transaction, its own stream each time
\set v random(1, 1000000000)
INSERT INTO raw_events (event_id, stream_id, stream_version, type, schema_version, data, metadata, occurred_at)
VALUES (gen_random_uuid(), 'pgbench-' || :client_id || '-' || :v, 1, 'InventoryUpdated', 1,
        '{"sku": "SKU-1", "quantity": 3, "unitPrice": "19.99", "reason": "restock"}',
        '{"actor": "bench"}', now());
