-- depends: 0005.custom_field_sets

-- Who may do what: users (people and service accounts) with an account-level role, project memberships
-- with a project-level permission, the project each subject belongs to, and keys that belong to a user.

-- The two ladders of access levels. A higher rank includes every lower one of its scope. The worker checks
-- writes with the same ladders in Python (cfv.domain.access), and cfv_allowed (below) spells them again for
-- reads; tests keep the three equal.
CREATE TABLE access_levels (
    name   text PRIMARY KEY,
    scope  text NOT NULL CHECK (scope IN ('account', 'project')),
    rank   integer NOT NULL
);
INSERT INTO access_levels (name, scope, rank) VALUES
    ('account_collaboration', 'account', 1),
    ('project_creator', 'account', 2),
    ('project_lead', 'account', 3),
    ('reports_viewer', 'account', 4),
    ('reports_viewer_with_cost', 'account', 5),
    ('account_admin', 'account', 6),
    ('project_collaboration', 'project', 1),
    ('time_logging', 'project', 2),
    ('financial', 'project', 3),
    ('project_admin', 'project', 4);

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id    bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind            text NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'service')),
    name            text NOT NULL,
    email           text,
    account_role    text NOT NULL CHECK (account_role IN ('account_collaboration', 'project_creator',
                        'project_lead', 'reports_viewer', 'reports_viewer_with_cost', 'account_admin')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deactivated_at  timestamptz,
    UNIQUE (workspace_id, id)
);
CREATE UNIQUE INDEX users_email ON users (workspace_id, lower(email)) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_service_name ON users (workspace_id, name) WHERE kind = 'service';

-- A project is named by text: a Workspace subject's id (Kantata) or a project's UUID (Plane).
CREATE TABLE project_memberships (
    workspace_id  bigint NOT NULL,
    user_id       bigint NOT NULL,
    project       text NOT NULL,
    permission    text NOT NULL CHECK (permission IN ('project_collaboration', 'time_logging', 'financial',
                      'project_admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id, project),
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE
);

-- Which project a Story or Resource belongs to, as an integration registered it (through the worker).
CREATE TABLE subject_projects (
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    subject_type  text NOT NULL,
    subject_id    text NOT NULL,
    project       text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, subject_type, subject_id)
);

-- Keys belong to a user. A key also signs the command messages it publishes (Ed25519, a private key derived
-- from the key); only the public half is stored, so the database cannot forge a command.
ALTER TABLE api_keys
    ADD COLUMN user_id     bigint,
    ADD COLUMN expires_at  timestamptz,
    ADD COLUMN public_key  bytea UNIQUE;

-- The keys made before users existed could do everything: they become keys of an administrator service
-- account, 'owner', of their workspace.
INSERT INTO users (workspace_id, kind, name, account_role)
SELECT DISTINCT workspace_id, 'service', 'owner', 'account_admin' FROM api_keys;
UPDATE api_keys k SET user_id = u.id
FROM users u WHERE u.workspace_id = k.workspace_id AND u.kind = 'service' AND u.name = 'owner';
ALTER TABLE api_keys
    ALTER COLUMN user_id SET NOT NULL,
    ADD FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE;
CREATE INDEX api_keys_user ON api_keys (workspace_id, user_id);

-- Who submitted a pending operation (the public key of their API key): a refusal of that key's command may
-- settle it; a message signed by anyone else cannot.
ALTER TABLE operations ADD COLUMN public_key bytea;

-- Whether a reader reaches access level p_level on a subject: the read-side twin of cfv.domain.access.allowed
-- (with subject_project), used to filter what reads return. The reader is an account role (p_role) and their
-- project memberships as one jsonb object, project -> permission, which a read query aggregates once
-- (coalesce(jsonb_object_agg(project, permission), '{}') over project_memberships); p_registered is the
-- subject's project as registered (subject_projects.project, from a LEFT JOIN).
--
-- The subject's project: a Workspace subject is a project; a work item belongs to its property's project, or
-- else where it was registered; Stories and Resources where registered; account subjects (Estimate,
-- WorkspaceGroup, User) to none: the account role governs them.
--
-- One pure expression, without sub-selects, so the planner inlines it into each query (a function with a
-- sub-select would be called once per row, and reads that count every matching row would run it 50,000 times
-- for 50,000 values). So the two ladders (lowest first) are spelled here too, as arrays ranked by
-- array_position: they must equal access_levels above and the Python ladders, which
-- tests/integration/test_access_matrix.py checks (the table against Python, and this function against Python's
-- allowed over every role, membership, subject and level). Not STRICT (that would stop the inlining) and
-- coalesced, so it answers true or false, never null.
CREATE FUNCTION cfv_allowed(p_role text, p_memberships jsonb, p_level text, p_subject_type text,
                            p_subject_id text, p_field_project uuid, p_registered text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_role = 'account_admin' THEN true
        WHEN p_level = 'account_admin' THEN false
        WHEN p_subject_type IN ('Estimate', 'WorkspaceGroup', 'User') THEN coalesce(
            coalesce(array_position(ARRAY['account_collaboration', 'project_creator', 'project_lead',
                                          'reports_viewer', 'reports_viewer_with_cost', 'account_admin'], p_role), 0)
            >= array_position(ARRAY['account_collaboration', 'project_creator', 'project_lead', 'reports_viewer',
                                    'reports_viewer_with_cost', 'account_admin'], p_level),
            false)
        ELSE coalesce(
            coalesce(array_position(ARRAY['project_collaboration', 'time_logging', 'financial', 'project_admin'],
                                    p_memberships ->> CASE
                                        WHEN p_subject_type = 'Workspace' THEN p_subject_id
                                        WHEN p_subject_type = 'WorkItem' AND p_field_project IS NOT NULL
                                            THEN p_field_project::text
                                        ELSE p_registered
                                    END), 0)
            >= array_position(ARRAY['project_collaboration', 'time_logging', 'financial', 'project_admin'], p_level),
            false)
    END
$$;

-- Idempotency keys now belong to the API key that sent them (stored as '<actor>|<key>'): scope the recorded
-- ones by the setter of their operation's values.
UPDATE idempotency_keys i SET key = (o.outcome -> 'values' -> 0 ->> 'setter') || '|' || i.key
FROM operations o
WHERE o.id = i.operation_id AND o.outcome -> 'values' -> 0 ->> 'setter' IS NOT NULL;
