-- depends: 0001.initial

-- Work-item properties (the Plane face): projects, and what Plane's properties and options carry beyond
-- Kantata's fields and choices; deletes in the history; external references on values.

-- A project scopes work-item properties. Its id may be chosen by the client, so it is unique per workspace
-- only: another workspace's project ids can neither collide with nor be probed by ours.
CREATE TABLE projects (
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    identifier    text NOT NULL,
    description   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX projects_identifier ON projects (workspace_id, identifier) WHERE deleted_at IS NULL;

ALTER TABLE custom_fields
    ADD COLUMN uuid              uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN project_id        uuid,
    ADD COLUMN is_required       boolean NOT NULL DEFAULT false,
    ADD COLUMN is_active         boolean NOT NULL DEFAULT true,
    ADD COLUMN default_value     jsonb,
    ADD COLUMN settings          jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN validation_rules  jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN external_id       text,
    ADD COLUMN external_source   text,
    ADD FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, id),
    ADD CHECK (project_id IS NULL OR subject_type = 'WorkItem');
CREATE INDEX custom_fields_project ON custom_fields (workspace_id, project_id, id)
    WHERE deleted_at IS NULL AND project_id IS NOT NULL;

ALTER TABLE custom_field_choices
    ADD COLUMN uuid             uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN description      text NOT NULL DEFAULT '',
    ADD COLUMN is_default       boolean NOT NULL DEFAULT false,
    ADD COLUMN is_active        boolean NOT NULL DEFAULT true,
    ADD COLUMN external_id      text,
    ADD COLUMN external_source  text,
    ADD COLUMN created_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();

-- A delete is a version too (with no value), so a key's history has every change, gapless.
ALTER TABLE value_versions
    ALTER COLUMN value DROP NOT NULL,
    ADD COLUMN external_id      text,
    ADD COLUMN external_source  text;

ALTER TABLE current_values
    ADD COLUMN external_id      text,
    ADD COLUMN external_source  text;
