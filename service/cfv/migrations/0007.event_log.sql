-- depends: 0006.access

-- The event log: every change event, numbered per workspace in commit order, kept after it is published.
--
-- The outbox marked each published event with an UPDATE, which rewrote the whole row (and its indexes) a
-- second time. Now an event is written once: `position` counts a workspace's events (the worker assigns it
-- under the workspace's apply lock, so positions grow in commit order), and the relay keeps one cursor per
-- workspace, the last position the broker confirmed. `outbox` remains, as a view, for operators' queries.

CREATE TABLE events (
    workspace_id  bigint NOT NULL,
    position      bigint NOT NULL CHECK (position > 0),
    event_id      uuid NOT NULL,
    type          text NOT NULL,
    routing_key   text NOT NULL,
    event         json NOT NULL,  -- the CloudEvent exactly as published (json keeps the text: nothing to re-encode)
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, position)
);
-- No foreign key to workspaces: workspaces are never deleted, and a key check per event row would cost more
-- than the rest of its insert. Old events are pruned by age.

CREATE TABLE relay_cursors (
    workspace_id  bigint PRIMARY KEY,
    position      bigint NOT NULL,
    published_at  timestamptz NOT NULL
);

INSERT INTO events (workspace_id, position, event_id, type, routing_key, event, created_at)
SELECT workspace_id, row_number() OVER (PARTITION BY workspace_id ORDER BY position), event_id, event->>'type',
       routing_key, event::json, created_at
FROM outbox;

-- The relay published the outbox in order and marked only confirmed prefixes, so each workspace's published
-- events are its first ones.
INSERT INTO relay_cursors (workspace_id, position, published_at)
SELECT workspace_id, count(*), max(published_at) FROM outbox WHERE published_at IS NOT NULL GROUP BY workspace_id;

DROP TABLE outbox;

-- Every event with its place in the log and when the relay had published it (the time its workspace's cursor
-- last moved past it: no earlier than its actual publication).
CREATE VIEW outbox AS
SELECT e.workspace_id, e.position, e.event_id, e.type, e.routing_key, e.event::jsonb AS event, e.created_at,
       CASE WHEN e.position <= c.position THEN c.published_at END AS published_at
FROM events e
LEFT JOIN relay_cursors c ON c.workspace_id = e.workspace_id;
