-- depends: 0004.field_options

-- Kantata's custom field sets: a named group of fields of one subject type.
CREATE TABLE custom_field_sets (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id      bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name              text NOT NULL,
    subject_type      text NOT NULL,
    custom_field_ids  bigint[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE INDEX custom_field_sets_workspace ON custom_field_sets (workspace_id, id) WHERE deleted_at IS NULL;
