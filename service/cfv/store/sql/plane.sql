-- Queries of the Plane face: projects, work-item properties (custom fields of a project) and their options,
-- and reads of values. Every query is scoped by workspace id, so another workspace's ids find nothing.

-- name: insert_project
-- Returns nothing when the id or the identifier is taken in this workspace.
INSERT INTO projects (workspace_id, id, name, identifier, description)
VALUES ($1, coalesce($2, gen_random_uuid()), $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: list_projects
SELECT * FROM projects WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id;

-- name: get_project
SELECT * FROM projects WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL;

-- name: update_project
UPDATE projects
SET name = coalesce($3, name), identifier = coalesce($4, identifier), description = coalesce($5, description),
    updated_at = now()
WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING *;

-- name: insert_property
INSERT INTO custom_fields (workspace_id, project_id, subject_type, name, description, value_type, relation_target,
                           relation_multi, write_access, read_access, is_required, default_value, is_active,
                           settings, validation_rules, external_id, external_source)
VALUES ($1, $2, 'WorkItem', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING *;

-- name: list_properties
SELECT * FROM custom_fields
WHERE workspace_id = $1 AND project_id = $2 AND deleted_at IS NULL
ORDER BY id;

-- name: get_property
SELECT f.* FROM custom_fields f
JOIN projects p ON (p.workspace_id, p.id) = (f.workspace_id, f.project_id) AND p.deleted_at IS NULL
WHERE f.workspace_id = $1 AND f.project_id = $2 AND f.uuid = $3 AND f.deleted_at IS NULL;

-- name: update_property
-- Arguments left null keep their value; default_value is set only when $9 says so (null is a valid default).
UPDATE custom_fields
SET name = coalesce($2, name), description = coalesce($3, description),
    is_required = coalesce($4, is_required), is_active = coalesce($5, is_active),
    settings = coalesce($6, settings), validation_rules = coalesce($7, validation_rules),
    default_value = CASE WHEN $9 THEN $8 ELSE default_value END,
    external_id = coalesce($10, external_id), external_source = coalesce($11, external_source),
    updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;


-- name: insert_option
INSERT INTO custom_field_choices (custom_field_id, label, position, description, is_default, is_active,
                                  external_id, external_source)
SELECT $1, $2, coalesce(max(position) + 1, 0), $3, $4, $5, $6, $7
FROM custom_field_choices WHERE custom_field_id = $1
RETURNING *;

-- name: list_options
SELECT * FROM custom_field_choices WHERE custom_field_id = $1 AND deleted_at IS NULL ORDER BY position, id;

-- name: get_option
SELECT * FROM custom_field_choices WHERE custom_field_id = $1 AND uuid = $2 AND deleted_at IS NULL;

-- name: option_uuids
-- Every option a stored value may name, deleted ones included.
SELECT id, uuid FROM custom_field_choices WHERE custom_field_id = ANY($1::bigint[]);

-- name: clear_other_defaults
-- A single-choice property has at most one default option.
UPDATE custom_field_choices SET is_default = false, updated_at = now()
WHERE custom_field_id = $1 AND id <> $2 AND is_default;

-- name: update_option
UPDATE custom_field_choices
SET label = coalesce($2, label), description = coalesce($3, description), is_default = coalesce($4, is_default),
    is_active = coalesce($5, is_active), external_id = coalesce($6, external_id),
    external_source = coalesce($7, external_source), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;


-- name: work_item_values
-- The current values of a work item for the given properties (all of a project's when $3 is null), those the
-- reader ($5, $6: user and role) may read (see the reads of gateway.sql).
WITH reader AS (  -- the reader's memberships, project -> permission (see list_values)
    SELECT coalesce(jsonb_object_agg(project, permission), '{}'::jsonb) AS projects
    FROM project_memberships WHERE workspace_id = $1 AND user_id = $5
)
SELECT c.custom_field_id, c.value_id AS id, c.value, c.external_id, c.external_source, c.updated_at AS set_at
FROM current_values c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
LEFT JOIN (SELECT * FROM subject_projects WHERE $6 <> 'account_admin') AS sp
    ON (sp.workspace_id, sp.subject_type, sp.subject_id) = (c.workspace_id, c.subject_type, c.subject_id)
WHERE c.workspace_id = $1 AND c.subject_type = 'WorkItem' AND c.subject_id = $2 AND c.value_id IS NOT NULL
  AND f.project_id = $4 AND ($3::bigint IS NULL OR c.custom_field_id = $3)
  AND cfv_allowed($6, (SELECT projects FROM reader), f.read_access, c.subject_type, c.subject_id, f.project_id,
                  sp.project)
ORDER BY c.custom_field_id;
