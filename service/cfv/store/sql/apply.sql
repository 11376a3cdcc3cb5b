-- Queries of the worker's apply transaction, in the order it runs them.

-- name: lock_workspaces
-- One workspace's commands are applied by one transaction at a time, in stream order, even if two workers
-- briefly both hold deliveries of it (a consumer hand-over after a broker restart). Returns the time of
-- the transaction, stamped on everything it writes.
SELECT now() AS now, count(pg_advisory_xact_lock(ws)) AS locked
FROM (SELECT DISTINCT unnest($1::bigint[]) AS ws ORDER BY 1) AS sorted;

-- name: load_batch
-- What the checks and the fold of a batch need, in one statement. It runs after lock_workspaces (a statement
-- of its own), so its snapshot sees every batch that held the locks before. Each column is a JSON array of rows,
-- each row an array in the order its comment names; null when there is none.
-- Keys come as JSON arrays (as persist_batch's rows do) and are looked up with LATERAL subqueries (LIMIT 1, so
-- the planner cannot flatten them into a join): a prepared statement's generic plan cannot know how many keys
-- come, and with a plain join it may choose to scan a whole table (it did: 9 ms a batch at 5,000 values); a
-- lateral lookup is one index probe per key whatever the plan.
SELECT
    -- operations already recorded: id, workspace, status, outcome, signing key (hex)
    (SELECT json_agg(json_build_array(o.id, o.workspace_id, o.status, o.outcome, encode(o.public_key, 'hex')))
     FROM operations o
     WHERE o.id = ANY(ARRAY(SELECT id::uuid FROM jsonb_array_elements_text($1::text::jsonb) AS i (id))))::text
        AS known,
    -- the keys that signed the batch's messages, as they are now (a key revoked or a role changed a moment ago
    -- is seen here; key and role changes take the workspace's lock): public key (hex), key, workspace, user,
    -- account role, valid
    (SELECT json_agg(json_build_array(encode(k.public_key, 'hex'), k.id, k.workspace_id, u.id, u.account_role,
                                      k.revoked_at IS NULL AND u.deactivated_at IS NULL
                                      AND (k.expires_at IS NULL OR k.expires_at > now())))
     FROM unnest($2::bytea[]) AS p (public_key)
     CROSS JOIN LATERAL (SELECT * FROM api_keys k WHERE k.public_key = p.public_key LIMIT 1) k
     CROSS JOIN LATERAL (SELECT * FROM users u WHERE (u.workspace_id, u.id) = (k.workspace_id, k.user_id) LIMIT 1) u
    )::text AS signers,
    -- their users' project memberships: user, project, permission
    (SELECT json_agg(DISTINCT jsonb_build_array(m.user_id, m.project, m.permission))
     FROM unnest($2::bytea[]) AS p (public_key)
     CROSS JOIN LATERAL (SELECT * FROM api_keys k WHERE k.public_key = p.public_key LIMIT 1) k
     JOIN project_memberships m ON (m.workspace_id, m.user_id) = (k.workspace_id, k.user_id))::text AS memberships,
    -- the fields the commands name: id, workspace, name, subject type, value type, relation target, relation
    -- multi, deleted, active, required, validation rules, unique, write access, read access, project, and every
    -- choice as [id, uuid, may be picked (active, not deleted)]
    (SELECT json_agg(json_build_array(f.id, f.workspace_id, f.name, f.subject_type, f.value_type, f.relation_target,
                                      f.relation_multi, f.deleted_at IS NOT NULL, f.is_active, f.is_required,
                                      f.validation_rules, f.unique_constraint, f.write_access, f.read_access,
                                      f.project_id,
                                      (SELECT json_agg(json_build_array(c.id, c.uuid,
                                                                        c.is_active AND c.deleted_at IS NULL)
                                                       ORDER BY c.id)
                                       FROM custom_field_choices c WHERE c.custom_field_id = f.id)))
     FROM unnest($3::bigint[]) AS i (id)
     CROSS JOIN LATERAL (SELECT * FROM custom_fields f WHERE f.id = i.id LIMIT 1) f)::text AS fields,
    -- the current state of the keys the commands name: workspace, subject type, subject id, field, seq, value
    -- id, value, external id, external source
    (SELECT json_agg(json_build_array(c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id, c.seq,
                                      c.value_id, c.value, c.external_id, c.external_source))
     FROM jsonb_array_elements($4::text::jsonb) AS k
     CROSS JOIN LATERAL (
         SELECT * FROM current_values c
         WHERE (c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id)
             = ((k->>0)::bigint, k->>1, k->>2, (k->>3)::bigint) LIMIT 1) c)::text AS states,
    -- the projects of the Stories and Resources the commands name: workspace, subject type, subject id, project
    (SELECT json_agg(json_build_array(s.workspace_id, s.subject_type, s.subject_id, s.project))
     FROM jsonb_array_elements($5::text::jsonb) AS k
     CROSS JOIN LATERAL (
         SELECT * FROM subject_projects s
         WHERE (s.workspace_id, s.subject_type, s.subject_id) = ((k->>0)::bigint, k->>1, k->>2) LIMIT 1) s)::text
        AS registrations,
    -- the workspaces: id, slug, last position of its event log
    (SELECT json_agg(json_build_array(w.id, w.slug,
                                      (SELECT coalesce(max(e.position), 0) FROM events e WHERE e.workspace_id = w.id)))
     FROM workspaces w WHERE w.id = ANY($6::bigint[]))::text AS workspaces,
    -- fresh value ids, ascending
    (SELECT array_agg(id ORDER BY id) FROM (SELECT nextval('value_ids') AS id FROM generate_series(1, $7::integer)) n)
        AS ids;

-- name: register_subjects
INSERT INTO subject_projects AS s (workspace_id, subject_type, subject_id, project, updated_at)
SELECT workspace_id, subject_type, subject_id, project, $5
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS v (workspace_id, subject_type, subject_id, project)
ON CONFLICT (workspace_id, subject_type, subject_id) DO UPDATE
    SET project = excluded.project, updated_at = excluded.updated_at;

-- name: idempotency_records
SELECT i.workspace_id, i.key, i.request_hash, o.outcome
FROM unnest($1::bigint[], $2::text[]) AS k (workspace_id, key)
CROSS JOIN LATERAL (
    SELECT * FROM idempotency_keys i WHERE (i.workspace_id, i.key) = (k.workspace_id, k.key) LIMIT 1) i
JOIN operations o ON o.id = i.operation_id AND o.workspace_id = i.workspace_id;

-- name: unique_holders
-- The state of the keys of unique fields already holding one of the values about to be written (the fold
-- needs them to refuse a clash); the columns of load_batch's states.
SELECT c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id, c.seq, c.value_id, c.value, c.external_id,
       c.external_source
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS k (workspace_id, custom_field_id, unique_key)
CROSS JOIN LATERAL (
    SELECT * FROM current_values c
    WHERE (c.workspace_id, c.custom_field_id, c.unique_key) = (k.workspace_id, k.custom_field_id, k.unique_key::jsonb)
    LIMIT 1) c;

-- name: users_named
-- The users a batch's user relations name, by id ($1 workspaces, $2 ids) or by UUID ($3, $4), and whether each
-- is active: a relation may only name users of its workspace.
SELECT u.workspace_id, u.id, u.uuid::text AS uuid, u.deactivated_at IS NULL AS active
FROM unnest($1::bigint[], $2::bigint[]) AS n (workspace_id, id)
JOIN users u ON u.workspace_id = n.workspace_id AND u.id = n.id
UNION
SELECT u.workspace_id, u.id, u.uuid::text AS uuid, u.deactivated_at IS NULL AS active
FROM unnest($3::bigint[], $4::uuid[]) AS n (workspace_id, uuid)
JOIN users u ON u.workspace_id = n.workspace_id AND u.uuid = n.uuid;

-- name: key_states
-- The state of keys learnt of after load_batch (the values of a field being deleted); its states' columns.
SELECT c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id, c.seq, c.value_id, c.value, c.external_id,
       c.external_source
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
    AS k (workspace_id, subject_type, subject_id, custom_field_id)
CROSS JOIN LATERAL (
    SELECT * FROM current_values c
    WHERE (c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id)
        = (k.workspace_id, k.subject_type, k.subject_id, k.custom_field_id) LIMIT 1) c;

-- name: allocate_value_ids
SELECT nextval('value_ids') AS id FROM generate_series(1, $1::integer) ORDER BY 1;

-- name: persist_batch
-- Everything a batch writes in the common case, in one statement (one round trip): the new versions of values
-- (a delete is a version with a null value), each key's state after the batch (given once per key), the change
-- events (each workspace's at the positions given), the operations' outcomes, and the notifications that wake
-- waiting gateways and the relay at commit. $6 is the transaction's time.
-- Each set of rows comes as one JSON array of rows (arrays, in the column order written here): encoding
-- thousands of array elements one by one cost the worker more than the rest of the statement, and values and
-- outcomes travel as JSON inside it, parsed once. Events are JSON strings, kept as their exact text.
WITH versions AS (
    INSERT INTO value_versions (id, workspace_id, subject_type, subject_id, custom_field_id, seq, value,
                                external_id, external_source, setter, operation_id, origin, created_at)
    SELECT (v->>0)::bigint, (v->>1)::bigint, v->>2, v->>3, (v->>4)::bigint, (v->>5)::bigint,
           nullif(v->6, 'null'::jsonb), v->>7, v->>8, v->>9, (v->>10)::uuid, v->>11, $6
    FROM jsonb_array_elements($1::text::jsonb) AS v
), current AS (
    INSERT INTO current_values AS c (workspace_id, subject_type, subject_id, custom_field_id, seq, value_id,
                                     value, external_id, external_source, setter, operation_id, origin, unique_key,
                                     created_at, updated_at)
    SELECT (v->>0)::bigint, v->>1, v->>2, (v->>3)::bigint, (v->>4)::bigint, (v->>5)::bigint,
           nullif(v->6, 'null'::jsonb), v->>7, v->>8, v->>9, (v->>10)::uuid, v->>11,
           CASE WHEN (v->>12)::boolean THEN nullif(v->6, 'null'::jsonb) END, $6, $6
    FROM jsonb_array_elements($2::text::jsonb) AS v
    ON CONFLICT (workspace_id, subject_type, subject_id, custom_field_id) DO UPDATE
        SET seq = excluded.seq, value_id = excluded.value_id, value = excluded.value, setter = excluded.setter,
            operation_id = excluded.operation_id, external_id = excluded.external_id,
            external_source = excluded.external_source, origin = excluded.origin,
            unique_key = excluded.unique_key, updated_at = excluded.updated_at
), logged AS (
    INSERT INTO events (workspace_id, position, event_id, type, routing_key, event, created_at)
    SELECT (e->>0)::bigint, (e->>1)::bigint, (e->>2)::uuid, e->>3, e->>4, (e->>5)::json, $6
    FROM jsonb_array_elements($3::text::jsonb) AS e
), settled AS (
    -- A recorded operation is only taken over by its own key while pending, or when nobody owns it.
    INSERT INTO operations AS o (id, workspace_id, status, outcome, created_at, completed_at, public_key)
    SELECT (v->>0)::uuid, (v->>1)::bigint, v->>2, v->3, $6, $6, decode(v->>4, 'hex')
    FROM jsonb_array_elements($4::text::jsonb) AS v
    ON CONFLICT (id) DO UPDATE
        SET status = excluded.status, outcome = excluded.outcome, completed_at = excluded.completed_at,
            public_key = excluded.public_key
        WHERE o.workspace_id = excluded.workspace_id
          AND (o.public_key IS NULL OR (o.status = 'pending' AND o.public_key = excluded.public_key))
)
SELECT count(pg_notify(n->>0, n->>1)) FROM jsonb_array_elements($5::text::jsonb) AS n;

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

-- name: begin_attempt
-- A suspect (redelivered) message is being applied alone, and its transaction holds its workspace's lock
-- (migration 0012). In a transaction of its own; returns how many such attempts, this one included, never ended.
INSERT INTO message_attempts AS a (digest, unfinished) VALUES ($1, 1)
ON CONFLICT (digest) DO UPDATE SET unfinished = a.unfinished + 1, updated_at = now()
RETURNING unfinished;

-- name: end_attempt
-- In the transaction that applies the message (or after it was refused): the attempt ended.
DELETE FROM message_attempts WHERE digest = $1;

-- name: live_project_fields
-- The projects a batch deletes that exist and are not deleted, each with its live properties (read once the
-- workspaces are locked, so a property created a moment ago is among them).
SELECT p.workspace_id, p.id AS project_id,
       coalesce(array_agg(f.id ORDER BY f.id) FILTER (WHERE f.id IS NOT NULL), '{}') AS field_ids
FROM unnest($1::bigint[], $2::uuid[]) AS q (workspace_id, project_id)
JOIN projects p ON (p.workspace_id, p.id) = (q.workspace_id, q.project_id) AND p.deleted_at IS NULL
LEFT JOIN custom_fields f ON (f.workspace_id, f.project_id) = (p.workspace_id, p.id) AND f.deleted_at IS NULL
GROUP BY p.workspace_id, p.id;

-- name: mark_projects_deleted
UPDATE projects SET deleted_at = $3, updated_at = $3
FROM unnest($1::bigint[], $2::uuid[]) AS d (workspace_id, project_id)
WHERE (projects.workspace_id, projects.id) = (d.workspace_id, d.project_id) AND projects.deleted_at IS NULL;

-- name: fields_being_deleted
-- The fields a batch deletes, as they are before it (their deletion events show them).
SELECT * FROM custom_fields WHERE id = ANY($1::bigint[]);

-- name: projects_being_deleted
-- The projects a batch deletes ($1 workspaces, $2 ids), as they are before it.
SELECT p.* FROM projects p
JOIN unnest($1::bigint[], $2::uuid[]) AS d (workspace_id, project_id) ON (p.workspace_id, p.id) = (d.workspace_id, d.project_id);
