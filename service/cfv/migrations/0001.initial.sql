-- cfv's initial schema: workspaces and keys, field definitions, values and their history,
-- operations (also the record of processed commands), idempotency keys and the event outbox.

CREATE TABLE workspaces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are random 256-bit secrets, so a plain SHA-256 is a safe, fast, indexable stored form.
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL UNIQUE,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE custom_fields (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id     bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             text NOT NULL,
    description      text,
    subject_type     text NOT NULL CHECK (subject_type IN
                         ('Estimate', 'Story', 'User', 'Workspace', 'WorkspaceGroup', 'Resource', 'WorkItem')),
    value_type       text NOT NULL CHECK (value_type IN ('string', 'url', 'email', 'file', 'date', 'datetime',
                         'number', 'currency', 'boolean', 'single', 'multi', 'relation')),
    relation_target  text CHECK (relation_target IN ('user', 'work_item')),
    relation_multi   boolean NOT NULL DEFAULT false,
    write_access     text NOT NULL,
    read_access      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CHECK ((value_type = 'relation') = (relation_target IS NOT NULL))
);
CREATE INDEX custom_fields_workspace ON custom_fields (workspace_id, id) WHERE deleted_at IS NULL;

CREATE TABLE custom_field_choices (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    custom_field_id  bigint NOT NULL REFERENCES custom_fields (id) ON DELETE CASCADE,
    label            text NOT NULL,
    position         integer NOT NULL,
    deleted_at       timestamptz
);
CREATE INDEX custom_field_choices_field ON custom_field_choices (custom_field_id);

-- Every value id comes from here: a write always makes a new value with a new id.
CREATE SEQUENCE value_ids;

-- The current state of each (subject, field): exactly one row, enforced by the primary key whatever the
-- concurrency. A deleted value leaves the row with a null value, so the sequence carries on.
CREATE TABLE current_values (
    workspace_id     bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    subject_type     text NOT NULL,
    subject_id       text NOT NULL,
    custom_field_id  bigint NOT NULL REFERENCES custom_fields (id) ON DELETE CASCADE,
    seq              bigint NOT NULL CHECK (seq > 0),
    value_id         bigint UNIQUE,
    value            jsonb,
    setter           text NOT NULL,
    operation_id     uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, subject_type, subject_id, custom_field_id),
    CHECK ((value_id IS NULL) = (value IS NULL))
);
CREATE INDEX current_values_field ON current_values (custom_field_id);

-- Every value ever written, current or replaced: the history. (key, seq) is unique, so a change can
-- never be applied twice.
CREATE TABLE value_versions (
    id               bigint PRIMARY KEY,
    workspace_id     bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    subject_type     text NOT NULL,
    subject_id       text NOT NULL,
    custom_field_id  bigint NOT NULL REFERENCES custom_fields (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    value            jsonb NOT NULL,
    setter           text NOT NULL,
    operation_id     uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    UNIQUE (workspace_id, subject_type, subject_id, custom_field_id, seq)
);

-- One row per processed command: its outcome, and the proof that it was applied (once).
-- 'pending' rows exist only for operations a client was told to poll.
CREATE TABLE operations (
    id            uuid PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    status        text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    outcome       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CHECK ((status = 'pending') = (outcome IS NULL))
);

CREATE TABLE idempotency_keys (
    workspace_id   bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key            text NOT NULL,
    request_hash   text NOT NULL,
    operation_id   uuid NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);

-- Change events waiting for (or kept after) publication; position is the publication order.
CREATE TABLE outbox (
    position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    routing_key   text NOT NULL,
    event         jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
