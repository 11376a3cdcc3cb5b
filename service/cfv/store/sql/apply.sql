-- Queries of the worker's apply transaction, in the order it runs them.

-- name: lock_workspaces
-- One workspace's commands are applied by one transaction at a time, in stream order, even if two workers
-- briefly both hold deliveries of it (a consumer hand-over after a broker restart). Returns the time of
-- the transaction, stamped on everything it writes.
SELECT now() AS now, count(pg_advisory_xact_lock(ws)) AS locked
FROM (SELECT DISTINCT unnest($1::bigint[]) AS ws ORDER BY 1) AS sorted;

-- name: signers
-- The keys that signed the batch's messages, with their users, as they are now: a key revoked (or a role
-- changed) a moment ago is seen here. Key and role changes take the workspace's lock, so they wait for the
-- batches of the workspace in flight, and the batches after them see the change.
SELECT k.public_key, k.id AS key_id, k.workspace_id, u.id AS user_id, u.account_role,
       k.revoked_at IS NULL AND u.deactivated_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AS valid
FROM api_keys k
JOIN users u ON (u.workspace_id, u.id) = (k.workspace_id, k.user_id)
WHERE k.public_key = ANY($1::bytea[]);

-- name: memberships
SELECT user_id, project, permission FROM project_memberships
WHERE workspace_id = ANY($1::bigint[]) AND user_id = ANY($2::bigint[]);

-- name: subject_registrations
SELECT s.workspace_id, s.subject_type, s.subject_id, s.project
FROM subject_projects s
JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS k (workspace_id, subject_type, subject_id)
    ON (s.workspace_id, s.subject_type, s.subject_id) = (k.workspace_id, k.subject_type, k.subject_id);

-- name: register_subjects
INSERT INTO subject_projects AS s (workspace_id, subject_type, subject_id, project, updated_at)
SELECT workspace_id, subject_type, subject_id, project, $5
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS v (workspace_id, subject_type, subject_id, project)
ON CONFLICT (workspace_id, subject_type, subject_id) DO UPDATE
    SET project = excluded.project, updated_at = excluded.updated_at;

-- name: known_operations
SELECT id, workspace_id, status, outcome, public_key FROM operations WHERE id = ANY($1::uuid[]);

-- name: field_definitions
-- The choices a write may pick (active, not deleted), and the UUID of every choice (an edit may remove any).
SELECT f.id, f.workspace_id, f.name, f.subject_type, f.value_type, f.relation_target, f.relation_multi,
       f.deleted_at IS NOT NULL AS deleted, f.is_active, f.is_required, f.validation_rules, f.unique_constraint,
       f.write_access, f.read_access, f.project_id,
       coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.is_active AND c.deleted_at IS NULL), '{}')
           AS choice_ids,
       coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), '{}') AS all_choice_ids,
       coalesce(array_agg(c.uuid ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), '{}') AS choice_uuids
FROM custom_fields f
LEFT JOIN custom_field_choices c ON c.custom_field_id = f.id
WHERE f.id = ANY($1::bigint[])
GROUP BY f.id;

-- name: workspace_slugs
SELECT id, slug FROM workspaces WHERE id = ANY($1::bigint[]);

-- name: idempotency_records
SELECT i.workspace_id, i.key, i.request_hash, o.outcome
FROM idempotency_keys i
JOIN operations o ON o.id = i.operation_id AND o.workspace_id = i.workspace_id
JOIN unnest($1::bigint[], $2::text[]) AS k (workspace_id, key)
    ON (i.workspace_id, i.key) = (k.workspace_id, k.key);

-- name: current_states
SELECT c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id, c.seq, c.value_id, c.value,
       c.external_id, c.external_source
FROM current_values c
JOIN unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS k (workspace_id, subject_type, subject_id,
                                                                       custom_field_id)
    ON (c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id)
     = (k.workspace_id, k.subject_type, k.subject_id, k.custom_field_id);

-- name: unique_holders
-- The keys of unique fields already holding one of the values about to be written.
SELECT c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id
FROM current_values c
JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS k (workspace_id, custom_field_id, unique_key)
    ON (c.workspace_id, c.custom_field_id, c.unique_key) = (k.workspace_id, k.custom_field_id, k.unique_key::jsonb);

-- name: allocate_value_ids
SELECT nextval('value_ids') AS id FROM generate_series(1, $1::integer) ORDER BY 1;

-- JSON columns arrive as text[] (asyncpg would read lists inside a jsonb[] as extra array dimensions).

-- name: insert_versions
-- A delete is a version with a null value.
INSERT INTO value_versions (id, workspace_id, subject_type, subject_id, custom_field_id, seq, value, external_id,
                            external_source, setter, operation_id, origin, created_at)
SELECT id, workspace_id, subject_type, subject_id, custom_field_id, seq, value::jsonb, external_id, external_source,
       setter, operation_id, origin, $13
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::uuid[], $12::text[])
    AS v (id, workspace_id, subject_type, subject_id, custom_field_id, seq, value, external_id, external_source,
          setter, operation_id, origin);

-- name: upsert_current
-- Called with each key once: its state after the whole batch (a deleted value leaves a null value).
INSERT INTO current_values AS c (workspace_id, subject_type, subject_id, custom_field_id, seq, value_id,
                                 value, external_id, external_source, setter, operation_id, origin, unique_key,
                                 created_at, updated_at)
SELECT workspace_id, subject_type, subject_id, custom_field_id, seq, value_id, value::jsonb, external_id,
       external_source, setter, operation_id, origin, CASE WHEN is_unique THEN value::jsonb END, $14, $14
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::uuid[], $12::text[], $13::boolean[])
    AS v (workspace_id, subject_type, subject_id, custom_field_id, seq, value_id, value, external_id,
          external_source, setter, operation_id, origin, is_unique)
ON CONFLICT (workspace_id, subject_type, subject_id, custom_field_id) DO UPDATE
    SET seq = excluded.seq, value_id = excluded.value_id, value = excluded.value, setter = excluded.setter,
        operation_id = excluded.operation_id, external_id = excluded.external_id,
        external_source = excluded.external_source, origin = excluded.origin, unique_key = excluded.unique_key,
        updated_at = excluded.updated_at;

-- name: insert_events
-- Each workspace's events take the next positions of its log, in the order given (under the workspace's lock).
INSERT INTO events (workspace_id, position, event_id, type, routing_key, event, created_at)
SELECT e.workspace_id, h.head + row_number() OVER (PARTITION BY e.workspace_id ORDER BY e.n), e.event_id, e.type,
       e.routing_key, e.event::json, $6
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
    AS e (event_id, workspace_id, type, routing_key, event, n)
CROSS JOIN LATERAL (SELECT coalesce(max(position), 0) AS head FROM events WHERE workspace_id = e.workspace_id) h;

-- name: complete_operations
INSERT INTO operations AS o (id, workspace_id, status, outcome, created_at, completed_at, public_key)
SELECT id, workspace_id, status, outcome::jsonb, $6, $6, public_key
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bytea[])
    AS v (id, workspace_id, status, outcome, public_key)
ON CONFLICT (id) DO UPDATE
    SET status = excluded.status, outcome = excluded.outcome, completed_at = excluded.completed_at,
        public_key = excluded.public_key
    WHERE o.workspace_id = excluded.workspace_id
      AND (o.public_key IS NULL OR (o.status = 'pending' AND o.public_key = excluded.public_key));

-- name: record_idempotency_keys
INSERT INTO idempotency_keys (workspace_id, key, request_hash, operation_id, created_at)
SELECT workspace_id, key, request_hash, operation_id, $5
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::uuid[]) AS v (workspace_id, key, request_hash, operation_id);

-- name: notify
SELECT count(pg_notify(channel, payload)) FROM unnest($1::text[], $2::text[]) AS n (channel, payload);

-- name: fail_operations
-- Operations named by a message that can never be applied. Unknown workspaces are skipped: nobody could
-- read such an operation anyway. $4 false: only record operations not recorded yet (a message refused
-- before it could be applied must not fail someone else's pending operation); true: also settle the pending
-- operations of key $5 (a verified message that failed inside cfv).
INSERT INTO operations AS o (id, workspace_id, status, outcome, completed_at, public_key)
SELECT v.id, v.workspace_id, 'failed', v.outcome::jsonb, now(), $5::bytea
FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS v (id, workspace_id, outcome)
JOIN workspaces w ON w.id = v.workspace_id
ON CONFLICT (id) DO UPDATE
    SET status = 'failed', outcome = excluded.outcome, completed_at = excluded.completed_at
    WHERE o.status = 'pending' AND o.workspace_id = excluded.workspace_id AND $4::boolean
      AND o.public_key = $5::bytea;

-- name: fail_unauthenticated
-- Commands whose credentials were refused at apply time (an unknown, revoked or expired key, or one of another
-- workspace). They settle a pending operation only if the same key submitted it; a null key (a stranger's)
-- leaves the record owned by nobody.
INSERT INTO operations AS o (id, workspace_id, status, outcome, created_at, completed_at, public_key)
SELECT v.id, v.workspace_id, 'failed', v.outcome::jsonb, $5, $5, v.public_key
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[]) AS v (id, workspace_id, outcome, public_key)
JOIN workspaces w ON w.id = v.workspace_id
ON CONFLICT (id) DO UPDATE
    SET status = 'failed', outcome = excluded.outcome, completed_at = excluded.completed_at
    WHERE o.status = 'pending' AND o.workspace_id = excluded.workspace_id AND o.public_key = excluded.public_key;

-- name: field_value_keys
-- The keys holding a value of a field about to be deleted (read under the workspace's lock).
SELECT subject_type, subject_id FROM current_values WHERE custom_field_id = $1 AND value_id IS NOT NULL;

-- name: mark_fields_deleted
UPDATE custom_fields SET deleted_at = $2, updated_at = $2 WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL;
