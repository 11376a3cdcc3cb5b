-- name: relay_lock
-- Only one relay publishes at a time, so each workspace's events leave in order; others wait as standbys.
SELECT pg_try_advisory_lock(-7301, 1);

-- name: relay_cursors
SELECT workspace_id, position FROM relay_cursors;

-- name: workspaces_with_unpublished_events
-- A sweep, when the relay starts and when no notification came for a while (one could have been missed).
-- Each workspace's last position is one index probe (a generic plan made before statistics exist could scan).
SELECT w.id AS workspace_id FROM workspaces w
LEFT JOIN relay_cursors c ON c.workspace_id = w.id
WHERE (SELECT e.position FROM events e WHERE e.workspace_id = w.id ORDER BY e.position DESC LIMIT 1)
    > coalesce(c.position, 0);

-- name: events_after
-- The next events of the given workspaces, each after its cursor, in position order; at most $3.
SELECT e.workspace_id, e.position, e.event_id::text AS event_id, e.type, e.routing_key, e.event::text AS event
FROM unnest($1::bigint[], $2::bigint[]) AS c (workspace_id, after)
CROSS JOIN LATERAL (
    SELECT * FROM events e
    WHERE e.workspace_id = c.workspace_id AND e.position > c.after
    ORDER BY e.position LIMIT $3
) e
ORDER BY e.workspace_id, e.position
LIMIT $3;

-- name: advance_cursors
INSERT INTO relay_cursors AS c (workspace_id, position, published_at)
SELECT workspace_id, position, now() FROM unnest($1::bigint[], $2::bigint[]) AS v (workspace_id, position)
ON CONFLICT (workspace_id) DO UPDATE
    SET position = greatest(c.position, excluded.position), published_at = excluded.published_at;

-- name: outbox_lag
-- For the metrics: committed events not yet published, and the age of the oldest, in seconds (0 when none).
-- One index range per workspace (each after its cursor), not a scan of the kept events.
SELECT coalesce(sum(l.unpublished), 0)::bigint AS unpublished,
       coalesce(extract(epoch FROM now() - min(l.oldest)), 0)::float8 AS oldest_age
FROM workspaces w
LEFT JOIN relay_cursors c ON c.workspace_id = w.id
CROSS JOIN LATERAL (
    SELECT count(*) AS unpublished, min(e.created_at) AS oldest FROM events e
    WHERE e.workspace_id = w.id AND e.position > coalesce(c.position, 0)
) l;
