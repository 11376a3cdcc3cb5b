-- name: relay_lock
-- Only one relay publishes at a time, so events leave in outbox order; others wait as standbys.
SELECT pg_try_advisory_lock(-7301, 1);

-- name: unpublished_events
SELECT position, routing_key, event FROM outbox
WHERE published_at IS NULL ORDER BY position LIMIT $1;

-- name: mark_published
UPDATE outbox SET published_at = now() WHERE position = ANY($1::bigint[]);
