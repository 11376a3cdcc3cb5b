-- depends: 0014.event_positions

-- Operations and idempotency records are pruned by age (CFV_OPERATION_RETENTION, CFV_IDEMPOTENCY_RETENTION) by the
-- active relay, a few hundred rows at a time. BRIN indexes find the old rows (rows are inserted in time order;
-- a BRIN index costs next to nothing to keep up, unlike a b-tree on the write path), and an index on
-- idempotency_keys.operation_id spares each deleted operation's cascade a scan of that table.
CREATE INDEX operations_created_at ON operations USING brin (created_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
CREATE INDEX idempotency_keys_operation_id ON idempotency_keys (operation_id);
