-- Queries of `cfv import values` and `cfv export values` (service/cfv/transfer.py).

-- name: workspace_field_definitions
-- The live fields of workspace $1, as validation needs them: the columns of load_batch's fields, in its order
-- (choices as a JSON array of [id, uuid, may be picked]).
SELECT f.id, f.workspace_id, f.name, f.subject_type, f.value_type, f.relation_target, f.relation_multi,
       f.deleted_at IS NOT NULL AS deleted, f.is_active, f.is_required, f.validation_rules, f.unique_constraint,
       f.write_access, f.read_access, f.project_id::text AS project,
       (SELECT jsonb_agg(jsonb_build_array(c.id, c.uuid, c.is_active AND c.deleted_at IS NULL) ORDER BY c.id)
        FROM custom_field_choices c WHERE c.custom_field_id = f.id) AS choices
FROM custom_fields f
WHERE f.workspace_id = $1 AND f.deleted_at IS NULL
ORDER BY f.id;

-- name: export_values
-- The current values of workspace $1 (of subject type $2 unless null), in the primary key's order: the same file
-- for the same values (subject ids order as text). Read through a cursor, a chunk at a time: whatever sorting
-- PostgreSQL does stays on the server (spilling to disk past work_mem); the client holds one chunk. Deleted values
-- (a null value) and the values of deleted fields are left out.
SELECT c.subject_type, c.subject_id, c.custom_field_id, f.name AS custom_field_name, c.value
FROM current_values c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
WHERE c.workspace_id = $1 AND ($2::text IS NULL OR c.subject_type = $2::text) AND c.value_id IS NOT NULL
ORDER BY c.workspace_id, c.subject_type, c.subject_id, c.custom_field_id;
