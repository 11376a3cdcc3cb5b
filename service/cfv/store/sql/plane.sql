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

-- name: list_properties
SELECT * FROM custom_fields
WHERE workspace_id = $1 AND project_id = $2 AND deleted_at IS NULL
ORDER BY id;

-- name: get_property
SELECT f.* FROM custom_fields f
JOIN projects p ON (p.workspace_id, p.id) = (f.workspace_id, f.project_id) AND p.deleted_at IS NULL
WHERE f.workspace_id = $1 AND f.project_id = $2 AND f.uuid = $3 AND f.deleted_at IS NULL;

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
WHERE custom_field_id = $1 AND id <> $2 AND is_default
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
