-- depends: 0015.retention

-- Webhooks: a workspace's account administrators register URLs that receive its change events, signed as the
-- Standard Webhooks specification says. The delivery processes (`cfv webhooks`) read the event log after each
-- webhook's cursor, in position order, and record every attempt; nothing of this is on the worker's write path.
--
-- The signing secret is kept as it is (`whsec_` + base64): signing needs the key itself, so a hash would not do,
-- and cfv has no key of its own to encrypt it with. It is never answered after its creation (or rotation) and
-- never logged.

CREATE TABLE webhooks (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id          bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by            bigint NOT NULL REFERENCES users (id),  -- deliveries carry what this user may read
    url                   text NOT NULL,
    description           text,
    event_types           text[] NOT NULL,
    subject_types         text[],  -- NULL: every subject type
    custom_field_ids      bigint[],  -- NULL: every field
    secret                text NOT NULL,
    cursor                bigint NOT NULL,  -- the last position delivered or given up (or skipped by the filters)
    head_attempts         integer NOT NULL DEFAULT 0,  -- failed attempts at the event after the cursor
    head_failing_since    timestamptz,  -- the first of them
    consecutive_failures  integer NOT NULL DEFAULT 0,  -- failed attempts since the last success, across events
    next_attempt_at       timestamptz,  -- when the event after the cursor may be tried again (NULL: now)
    disabled_at           timestamptz,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, id);

-- Every attempt at delivering an event to a webhook; a retry asked through the API is a 'pending' row until a
-- delivery process sends it.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    position         bigint NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'given_up')),
    attempt          integer NOT NULL,  -- 1 for the first attempt at this event, and so on
    manual           boolean NOT NULL DEFAULT false,  -- a retry asked through the API
    response_status  integer,
    error            text,
    duration_ms      integer,
    attempted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (id) WHERE status = 'pending';
