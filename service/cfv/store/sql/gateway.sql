-- name: ping
-- Readiness: the database answers.
SELECT 1;

-- name: principal_by_key_hash
SELECT k.id AS key_id, k.secret_hash, k.revoked_at, k.expires_at, k.public_key, u.id AS user_id, u.account_role,
       u.deactivated_at, w.id AS workspace_id, w.slug
FROM api_keys k
JOIN users u ON (u.workspace_id, u.id) = (k.workspace_id, k.user_id)
JOIN workspaces w ON w.id = k.workspace_id
WHERE k.secret_hash = $1;

-- name: membership_permission
SELECT permission FROM project_memberships WHERE workspace_id = $1 AND user_id = $2 AND project = $3;

-- name: key_owners
-- The users behind setters (API keys) of the workspace.
SELECT k.id AS key_id, u.id AS user_id, u.kind, u.name
FROM api_keys k JOIN users u ON (u.workspace_id, u.id) = (k.workspace_id, k.user_id)
WHERE k.workspace_id = $1 AND k.id = ANY($2::bigint[]);

-- name: record_public_key
UPDATE api_keys SET public_key = $2 WHERE id = $1 AND public_key IS NULL;

-- name: operation
SELECT status, outcome FROM operations WHERE id = $1 AND workspace_id = $2;

-- name: fence_operation
-- A command the broker did not confirm may reach a worker all the same, any time later. Recorded failed (run
-- under the workspace's apply lock, lock_workspace), it never will be applied: a worker answers it from this
-- record. Unless a worker recorded it first; either way the record says what became of it.
INSERT INTO operations AS o (id, workspace_id, status, outcome, completed_at, public_key)
VALUES ($1, $2, 'failed', $3::text::jsonb, now(), $4)
ON CONFLICT (id) DO NOTHING;

-- name: mark_operations_pending
-- With the public key of the API key that submitted each: only that key's refusal may settle it (see apply.sql).
INSERT INTO operations (id, workspace_id, status, public_key)
SELECT id, workspace_id, 'pending', public_key FROM unnest($1::uuid[], $2::bigint[], $3::bytea[])
    AS o (id, workspace_id, public_key)
ON CONFLICT (id) DO NOTHING;

-- name: readable_values
-- Which of the given values ($4, $5, $6: subject types, subject ids, field ids) the reader ($2, $3: user and
-- role) may see, by position. Filtered as the value reads are (see list_values).
WITH reader AS (  -- the reader's memberships, project -> permission
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $2
)
SELECT k.n
FROM unnest($4::text[], $5::text[], $6::bigint[]) WITH ORDINALITY AS k (subject_type, subject_id, custom_field_id, n)
JOIN custom_fields f ON f.id = k.custom_field_id AND f.workspace_id = $1
LEFT JOIN (SELECT * FROM subject_projects WHERE $3 <> 'account_admin') AS sp
    ON (sp.workspace_id, sp.subject_type, sp.subject_id) = ($1, k.subject_type, k.subject_id)
WHERE cfv_allowed($3, (SELECT projects FROM reader), f.read_access, k.subject_type, k.subject_id, f.project_id,
                  sp.project);

-- name: operation_outcomes
SELECT id, outcome FROM operations WHERE id = ANY($1::uuid[]) AND status <> 'pending';

-- name: list_fields
SELECT * FROM custom_fields WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $2 OFFSET $3;

-- name: count_fields
SELECT count(*) FROM custom_fields WHERE workspace_id = $1 AND deleted_at IS NULL;

-- name: get_field
SELECT * FROM custom_fields WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL;

-- name: field_choices
SELECT id, custom_field_id, label, position FROM custom_field_choices
WHERE custom_field_id = ANY($1::bigint[]) AND deleted_at IS NULL ORDER BY custom_field_id, position, id;

-- name: insert_field
-- A field, of no project (Kantata) or of project $2 (a Plane property); $15 settings and $16 validation rules
-- (null: none).
INSERT INTO custom_fields (workspace_id, project_id, name, description, subject_type, value_type, relation_target,
                           relation_multi, write_access, read_access, is_required, default_value, unique_constraint,
                           is_active, settings, validation_rules, external_id, external_source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, coalesce($15::jsonb, '{}'),
        coalesce($16::jsonb, '{}'), $17, $18)
RETURNING *;

-- name: insert_choices
INSERT INTO custom_field_choices (custom_field_id, label, position)
SELECT $1, label, $3 + n - 1 FROM unnest($2::text[]) WITH ORDINALITY AS c (label, n)
RETURNING *;

-- name: next_choice_position
SELECT coalesce(max(position) + 1, 0) FROM custom_field_choices WHERE custom_field_id = $1;

-- name: update_field
-- Arguments left null keep their value; default_value is set only when $12 says so (null is a valid default).
UPDATE custom_fields
SET name = coalesce($3, name), description = coalesce($4, description),
    write_access = coalesce($5, write_access), read_access = coalesce($6, read_access),
    is_required = coalesce($7, is_required), is_active = coalesce($8, is_active),
    settings = coalesce($9::jsonb, settings), validation_rules = coalesce($10::jsonb, validation_rules),
    default_value = CASE WHEN $12 THEN $11 ELSE default_value END,
    external_id = coalesce($13, external_id), external_source = coalesce($14, external_source), updated_at = now()
WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL
RETURNING *;


-- Reads return only what the reader may see: $user and $role (the last two arguments of each value query)
-- name the reader, and cfv_allowed (migration 0006) applies each field's read_access. cfv_allowed is one pure
-- expression, which Postgres inlines into the filter (the plan shows a CASE, no function call per row); what
-- it needs besides the row is read once per query, not per row:
-- - the reader's memberships, one jsonb object project -> permission (the "reader" CTE, passed as a scalar
--   sub-select, so an InitPlan: evaluated once, and only if a row needs it);
-- - the subject's registered project (subject_projects, at most one row per subject), joined; an
--   administrator's filter is true before it looks at either, and nothing is looked up for them.
-- readable_values (above) and work_item_values (plane.sql) do the same.

-- name: list_values
-- $7 the order ('updated_at' or 'id'), $8 descending; value ids break ties, so pages never overlap.
WITH reader AS (  -- the reader's memberships, project -> permission
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $11
), placed AS MATERIALIZED (
    -- The registered projects of the subjects listed, read once and hashed (an index probe per value would
    -- be slower, and the generic plan of a prepared statement, which guesses few rows, would choose it);
    -- nothing for an administrator.
    SELECT s.subject_id, s.project FROM subject_projects s
    WHERE s.workspace_id = $1 AND s.subject_type = $2 AND ($3::text[] IS NULL OR s.subject_id = ANY($3::text[]))
      AND $12 <> 'account_admin'
)
SELECT c.value_id AS id, c.subject_type, c.subject_id, c.custom_field_id, f.name AS custom_field_name,
       f.value_type, c.value, c.seq AS sequence, c.setter, c.operation_id, c.external_id, c.external_source,
       c.origin, c.updated_at AS created_at, count(*) OVER () AS total
FROM current_values c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
LEFT JOIN placed sp ON sp.subject_id = c.subject_id
WHERE c.workspace_id = $1 AND c.subject_type = $2 AND c.value_id IS NOT NULL
  AND ($3::text[] IS NULL OR c.subject_id = ANY($3::text[]))
  AND ($4::bigint[] IS NULL OR c.custom_field_id = ANY($4::bigint[]))
  AND ($5::timestamptz IS NULL OR c.updated_at > $5) AND ($6::timestamptz IS NULL OR c.updated_at < $6)
  AND cfv_allowed($12, (SELECT projects FROM reader), f.read_access, c.subject_type, c.subject_id, f.project_id,
                  sp.project)
ORDER BY CASE WHEN $7 = 'updated_at' AND NOT $8 THEN c.updated_at END,
         CASE WHEN $7 = 'updated_at' AND $8 THEN c.updated_at END DESC,
         CASE WHEN $8 THEN c.value_id END DESC,
         c.value_id
LIMIT $9 OFFSET $10;

-- name: values_by_ids
WITH reader AS (  -- the reader's memberships, project -> permission (see list_values)
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $3
)
SELECT c.value_id AS id, c.subject_type, c.subject_id, c.custom_field_id, f.name AS custom_field_name,
       f.value_type, c.value, c.seq AS sequence, c.setter, c.operation_id, c.external_id, c.external_source,
       c.origin, c.updated_at AS created_at
FROM value_versions v  -- a value's id is its version's: found by that primary key, then its key's current value
JOIN current_values c
    ON (c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id)
     = (v.workspace_id, v.subject_type, v.subject_id, v.custom_field_id) AND c.value_id = v.id
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
LEFT JOIN (SELECT * FROM subject_projects WHERE $4 <> 'account_admin') AS sp
    ON (sp.workspace_id, sp.subject_type, sp.subject_id) = (c.workspace_id, c.subject_type, c.subject_id)
WHERE v.workspace_id = $1 AND v.id = ANY($2::bigint[])
  AND cfv_allowed($4, (SELECT projects FROM reader), f.read_access, c.subject_type, c.subject_id, f.project_id,
                  sp.project);

-- name: value_history
-- Every version of one value, oldest first; a delete is a version with a null value.
WITH reader AS (  -- the reader's memberships, project -> permission (see list_values)
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $5
)
SELECT v.id, v.subject_type, v.subject_id, v.custom_field_id, f.name AS custom_field_name, f.value_type, v.value,
       v.seq AS sequence, v.setter, v.operation_id, v.external_id, v.external_source, v.origin, v.created_at
FROM value_versions v
JOIN custom_fields f ON f.id = v.custom_field_id
LEFT JOIN (SELECT * FROM subject_projects WHERE $6 <> 'account_admin') AS sp
    ON (sp.workspace_id, sp.subject_type, sp.subject_id) = (v.workspace_id, v.subject_type, v.subject_id)
WHERE v.workspace_id = $1 AND v.subject_type = $2 AND v.subject_id = $3 AND v.custom_field_id = $4
  AND cfv_allowed($6, (SELECT projects FROM reader), f.read_access, v.subject_type, v.subject_id, f.project_id,
                  sp.project)
ORDER BY v.seq;

-- name: choices_by_ids
SELECT id, custom_field_id, label, position FROM custom_field_choices WHERE id = ANY($1::bigint[]);

-- name: fields_by_ids
SELECT * FROM custom_fields WHERE workspace_id = $1 AND id = ANY($2::bigint[]);

-- Choices (Kantata's custom_field_choices; Plane's options are the same rows).

-- name: choices_in_workspace
SELECT c.*, f.value_type FROM custom_field_choices c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
WHERE f.workspace_id = $1 AND c.deleted_at IS NULL AND ($2::bigint[] IS NULL OR c.custom_field_id = ANY($2::bigint[]))
ORDER BY c.custom_field_id, c.position, c.id
LIMIT $3 OFFSET $4;

-- name: count_choices_in_workspace
SELECT count(*) FROM custom_field_choices c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
WHERE f.workspace_id = $1 AND c.deleted_at IS NULL AND ($2::bigint[] IS NULL OR c.custom_field_id = ANY($2::bigint[]));

-- name: choice_in_workspace
SELECT c.* FROM custom_field_choices c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
WHERE f.workspace_id = $1 AND c.id = $2 AND c.deleted_at IS NULL;

-- name: insert_choice
-- At position $3, or after the last; $6 a description, $7 the default (a Plane option), $8 false: inactive.
INSERT INTO custom_field_choices (custom_field_id, label, position, external_id, external_source, description,
                                  is_default, is_active)
SELECT $1, $2, coalesce($3, (SELECT coalesce(max(position) + 1, 0) FROM custom_field_choices
                             WHERE custom_field_id = $1)), $4, $5, coalesce($6, ''),
       coalesce($7, false), coalesce($8, true)
RETURNING *;

-- name: update_choice
UPDATE custom_field_choices
SET label = coalesce($2, label), position = coalesce($3, position), external_id = coalesce($4, external_id),
    external_source = coalesce($5, external_source), description = coalesce($6, description),
    is_default = coalesce($7, is_default), is_active = coalesce($8, is_active), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;

-- name: lock_workspace
-- The lock the worker holds while it applies a workspace's commands: nothing is written meanwhile.
SELECT pg_advisory_xact_lock($1);

-- name: choice_in_use
SELECT EXISTS (SELECT FROM current_values
               WHERE custom_field_id = $1 AND value_id IS NOT NULL AND value @> jsonb_build_array($2::bigint));

-- name: delete_choice
UPDATE custom_field_choices SET deleted_at = now(), updated_at = now(), is_default = false
WHERE id = $1 AND deleted_at IS NULL RETURNING id;

-- Custom field sets. A deleted field drops out of the sets that list it.

-- name: insert_set
INSERT INTO custom_field_sets (workspace_id, name, subject_type, custom_field_ids) VALUES ($1, $2, $3, $4)
RETURNING id;

-- name: list_sets
SELECT s.id, s.name, s.subject_type, s.created_at, s.updated_at,
       coalesce((SELECT array_agg(f.id ORDER BY k.n) FROM unnest(s.custom_field_ids) WITH ORDINALITY AS k (id, n)
                 JOIN custom_fields f ON f.id = k.id AND f.deleted_at IS NULL), '{}') AS custom_field_ids
FROM custom_field_sets s
WHERE s.workspace_id = $1 AND s.deleted_at IS NULL AND ($2::bigint IS NULL OR s.id = $2)
ORDER BY s.id LIMIT $3 OFFSET $4;

-- name: count_sets
SELECT count(*) FROM custom_field_sets WHERE workspace_id = $1 AND deleted_at IS NULL;

-- name: fields_for_set
-- The fields a set may list: live fields of the workspace with the set's subject type.
SELECT id FROM custom_fields
WHERE workspace_id = $1 AND id = ANY($2::bigint[]) AND subject_type = $3 AND deleted_at IS NULL;

-- name: update_set
UPDATE custom_field_sets
SET name = coalesce($3, name), custom_field_ids = coalesce($4, custom_field_ids), updated_at = now()
WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING id;

-- name: delete_set
UPDATE custom_field_sets SET deleted_at = now(), updated_at = now()
WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING id;

-- name: list_values_as_of
-- The values as they stood at $11 (from the history), so the pages of one listing agree with each other
-- whatever is written meanwhile. Same arguments and order as list_values.
WITH latest AS (
    SELECT DISTINCT ON (v.subject_id, v.custom_field_id) v.*
    FROM value_versions v
    WHERE v.workspace_id = $1 AND v.subject_type = $2 AND v.created_at <= $11
      AND ($3::text[] IS NULL OR v.subject_id = ANY($3::text[]))
      AND ($4::bigint[] IS NULL OR v.custom_field_id = ANY($4::bigint[]))
    ORDER BY v.subject_id, v.custom_field_id, v.seq DESC
), reader AS (  -- the reader's memberships, project -> permission (see list_values)
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $12
), placed AS MATERIALIZED (  -- as in list_values
    SELECT s.subject_id, s.project FROM subject_projects s
    WHERE s.workspace_id = $1 AND s.subject_type = $2 AND ($3::text[] IS NULL OR s.subject_id = ANY($3::text[]))
      AND $13 <> 'account_admin'
)
SELECT l.id, l.subject_type, l.subject_id, l.custom_field_id, f.name AS custom_field_name, f.value_type, l.value,
       l.seq AS sequence, l.setter, l.operation_id, l.external_id, l.external_source, l.origin, l.created_at,
       count(*) OVER () AS total
FROM latest l
JOIN custom_fields f ON f.id = l.custom_field_id AND (f.deleted_at IS NULL OR f.deleted_at > $11)
LEFT JOIN placed sp ON sp.subject_id = l.subject_id
WHERE l.value IS NOT NULL
  AND ($5::timestamptz IS NULL OR l.created_at > $5) AND ($6::timestamptz IS NULL OR l.created_at < $6)
  AND cfv_allowed($13, (SELECT projects FROM reader), f.read_access, l.subject_type, l.subject_id, f.project_id,
                  sp.project)
ORDER BY CASE WHEN $7 = 'updated_at' AND NOT $8 THEN l.created_at END,
         CASE WHEN $7 = 'updated_at' AND $8 THEN l.created_at END DESC,
         CASE WHEN $8 THEN l.id END DESC,
         l.id
LIMIT $9 OFFSET $10;

-- name: read_time
SELECT now();
