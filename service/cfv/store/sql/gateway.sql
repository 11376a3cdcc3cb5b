-- name: workspace_by_key_hash
SELECT k.id AS key_id, w.id AS workspace_id, w.slug
FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
WHERE k.secret_hash = $1 AND k.revoked_at IS NULL;

-- name: operation
SELECT status, outcome FROM operations WHERE id = $1 AND workspace_id = $2;

-- name: mark_operation_pending
INSERT INTO operations (id, workspace_id, status) VALUES ($1, $2, 'pending') ON CONFLICT (id) DO NOTHING;

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
INSERT INTO custom_fields (workspace_id, name, description, subject_type, value_type, relation_target,
                           relation_multi, write_access, read_access)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id;

-- name: insert_choices
INSERT INTO custom_field_choices (custom_field_id, label, position)
SELECT $1, label, $3 + n - 1 FROM unnest($2::text[]) WITH ORDINALITY AS c (label, n);

-- name: next_choice_position
SELECT coalesce(max(position) + 1, 0) FROM custom_field_choices WHERE custom_field_id = $1;

-- name: update_field
UPDATE custom_fields
SET name = coalesce($3, name), description = coalesce($4, description),
    write_access = coalesce($5, write_access), read_access = coalesce($6, read_access), updated_at = now()
WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL
RETURNING id;

-- name: delete_field
UPDATE custom_fields SET deleted_at = now(), updated_at = now()
WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL
RETURNING id;
