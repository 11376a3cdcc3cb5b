-- The event log: every change event, kept for CFV_EVENT_RETENTION, read by position (the replay API and
-- `cfv events`), and pruned by the active relay.

-- name: events_page
-- The events of workspace $1 after position $2 that reader ($8 user, $9 account role) may read, in position
-- order: at most $3 of them, looking at no more than $4 rows (a selective filter must not make one request scan
-- the whole log; the answer's next_after then says how far it looked). Filters, each NULL for none: $5 event
-- types, $6 a subject type, $7 field ids. Access is each field's read_access on the subject, as for value reads
-- (cfv_allowed, migration 0006). A definition event of a field (a field, property, choice or option: it names a
-- field and no subject) is shown to those who may read the field's values whatever the subject: by account role for
-- account subjects, by permission in a Plane property's project; those of fields of other project subjects, whose
-- readers depend on each subject's project, to account administrators only. A definition event of no field (a set,
-- a project) is shown to every reader, as the definitions themselves are.
WITH reader AS (
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $8
), window_ AS (
    SELECT e.position, e.type, e.event, e.event::jsonb -> 'data' AS data  -- parsed once, not per operator
    FROM events e WHERE e.workspace_id = $1 AND e.position > $2
    ORDER BY e.position LIMIT $4
), rows_ AS (
    SELECT position, type, event, data ->> 'subject_type' AS subject_type, data ->> 'subject_id' AS subject_id,
           (data ->> 'custom_field_id')::bigint AS custom_field_id
    FROM window_
)
SELECT l.last_seen, p.position, p.event  -- one row with a NULL position when none is shown
FROM (SELECT max(position) AS last_seen FROM window_) l
LEFT JOIN LATERAL (
    SELECT w.position, w.event::text AS event
    FROM rows_ w
    LEFT JOIN custom_fields f ON f.id = w.custom_field_id
    LEFT JOIN subject_projects sp ON $9 <> 'account_admin'
        AND (sp.workspace_id, sp.subject_type, sp.subject_id) = ($1, w.subject_type, w.subject_id)
    WHERE ($5::text[] IS NULL OR w.type = ANY($5::text[]))
      AND ($6::text IS NULL OR w.subject_type = $6)
      AND ($7::bigint[] IS NULL OR w.custom_field_id = ANY($7::bigint[]))
      AND (w.custom_field_id IS NULL
           OR cfv_allowed($9, (SELECT projects FROM reader), f.read_access, w.subject_type, w.subject_id,
                          f.project_id, sp.project))
    ORDER BY w.position
    LIMIT $3
) p ON true
ORDER BY p.position;

-- name: event_log_bounds
-- The oldest position workspace $1 keeps, and its newest (NULL, NULL: it has none).
SELECT min(position) AS oldest, max(position) AS newest FROM events WHERE workspace_id = $1;

-- name: event_log_after
-- The stored events of workspace $1 after position $2, in order, at most $3, as stored (for `cfv events`):
-- position, id, type, routing key and the CloudEvent's text.
SELECT position, event_id::text AS event_id, type, routing_key, event::text AS event
FROM events WHERE workspace_id = $1 AND position > $2 AND ($4::text[] IS NULL OR type = ANY($4::text[]))
ORDER BY position LIMIT $3;

-- name: prune_events
-- Delete events older than $1 seconds that the relay has published, keeping each workspace's newest (its next position
-- follows it): looking at the first $2 of each workspace's log, whose creation times rise with their positions.
WITH doomed AS (
    SELECT c.workspace_id, p.position
    FROM relay_cursors c
    CROSS JOIN LATERAL (
        SELECT e.position, e.created_at FROM events e
        WHERE e.workspace_id = c.workspace_id ORDER BY e.position LIMIT $2
    ) p
    WHERE p.created_at < now() - make_interval(secs => $1) AND p.position < c.position
)
DELETE FROM events e USING doomed d WHERE (e.workspace_id, e.position) = (d.workspace_id, d.position);

-- name: prune_idempotency_keys
-- Idempotency records older than $1 seconds, at most $2 of them (a retry with such a key is a new request).
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2));

-- name: prune_operations
-- Settled operations older than $1 seconds, at most $2 of them (their idempotency records go with them); a
-- pending one stays, whatever its age: its command may still be applied.
DELETE FROM operations WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM operations
    WHERE created_at < now() - make_interval(secs => $1) AND status <> 'pending' LIMIT $2));

-- name: event_log_head
-- The last position of workspace $1's log (0: none yet) and the transaction's time. Read under the workspace's
-- lock (the worker's apply lock), so the positions written after it follow commit order.
SELECT coalesce(max(position), 0) AS last, now() AS now FROM events WHERE workspace_id = $1;

-- name: append_events
-- Events of workspace $1 outside the worker (definition changes), in the transaction of their change: $2 a JSON
-- array of [position, id, type, routing key, CloudEvent text]; the relay is told at commit (channel $3, payload
-- the workspace id, as the worker tells it).
WITH logged AS (
    INSERT INTO events (workspace_id, position, event_id, type, routing_key, event)
    SELECT $1, (e->>0)::bigint, (e->>1)::uuid, e->>2, e->>3, (e->>4)::json
    FROM jsonb_array_elements($2::text::jsonb) AS e
)
SELECT pg_notify($3, $1::text);
