-- Webhooks: their management (the gateway, account administrators of the workspace) and their delivery (the
-- `cfv webhooks` processes, which read the event log after each webhook's cursor and record every attempt).

-- name: create_webhook
-- A webhook of workspace $1 made by user $2; it delivers the events committed from now on (its cursor is the
-- workspace's newest position).
INSERT INTO webhooks (workspace_id, created_by, url, description, event_types, subject_types, custom_field_ids,
                      secret, cursor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
        coalesce((SELECT e.position FROM events e WHERE e.workspace_id = $1 ORDER BY e.position DESC LIMIT 1), 0))
RETURNING *;

-- name: list_webhooks
-- The webhooks of workspace $1, by id, $2 of them after skipping $3.
SELECT * FROM webhooks WHERE workspace_id = $1 ORDER BY id LIMIT $2 OFFSET $3;

-- name: count_webhooks
SELECT count(*) FROM webhooks WHERE workspace_id = $1;

-- name: get_webhook
-- Webhook $2 of workspace $1 (none: unknown, or another workspace's).
SELECT * FROM webhooks WHERE workspace_id = $1 AND id = $2;

-- name: update_webhook
-- Webhook $2 of workspace $1 as changed through the API: its definition ($3-$7), its secret ($8), and enabled
-- ($9 true: enabled, resuming where it stopped, with its failures forgotten; false: disabled by an administrator;
-- NULL: as it is). A new URL is tried at once, whatever the back-off of the old one.
UPDATE webhooks SET
    url = $3, description = $4, event_types = $5, subject_types = $6, custom_field_ids = $7, secret = $8,
    disabled_at = CASE WHEN $9::boolean THEN NULL WHEN NOT $9::boolean THEN coalesce(disabled_at, now())
                       ELSE disabled_at END,
    disabled_reason = CASE WHEN $9::boolean THEN NULL
                           WHEN NOT $9::boolean THEN coalesce(disabled_reason, 'disabled by an administrator')
                           ELSE disabled_reason END,
    consecutive_failures = CASE WHEN $9::boolean THEN 0 ELSE consecutive_failures END,
    head_attempts = CASE WHEN $9::boolean THEN 0 ELSE head_attempts END,
    head_failing_since = CASE WHEN $9::boolean THEN NULL ELSE head_failing_since END,
    next_attempt_at = CASE WHEN $9::boolean OR url IS DISTINCT FROM $3 THEN NULL ELSE next_attempt_at END,
    updated_at = now()
WHERE workspace_id = $1 AND id = $2
RETURNING *;

-- name: delete_webhook
DELETE FROM webhooks WHERE workspace_id = $1 AND id = $2 RETURNING id;

-- name: list_webhook_deliveries
-- The attempts of webhook $1, newest first, $2 of them after skipping $3.
SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3;

-- name: count_webhook_deliveries
SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1;

-- name: request_webhook_retry
-- A retry of the event of delivery $2 (of webhook $1), waiting for a delivery process: a 'pending' attempt.
INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, status, attempt, manual)
SELECT webhook_id, position, event_id, event_type, 'pending',
       (SELECT count(*) + 1 FROM webhook_deliveries o WHERE o.webhook_id = d.webhook_id AND o.position = d.position
                                                        AND o.status <> 'pending'),
       true
FROM webhook_deliveries d WHERE d.webhook_id = $1 AND d.id = $2
RETURNING *;

-- name: due_webhooks
-- The enabled webhooks whose next attempt is due and with events after their cursor (each one index probe).
SELECT w.id FROM webhooks w
WHERE w.disabled_at IS NULL AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
  AND (SELECT e.position FROM events e WHERE e.workspace_id = w.workspace_id ORDER BY e.position DESC LIMIT 1)
      > w.cursor
ORDER BY w.id;

-- name: webhook_lock
-- Webhook $1 is delivered by one process at a time (a session lock: released when it is done, or when its
-- process dies and its connection closes).
SELECT pg_try_advisory_lock(-7302, ($1::bigint % 2147483647)::integer);

-- name: webhook_unlock
SELECT pg_advisory_unlock(-7302, ($1::bigint % 2147483647)::integer);

-- name: webhook_to_deliver
-- Webhook $1 with what its creator may read now: their account role (NULL if they were deactivated).
SELECT w.*, CASE WHEN u.deactivated_at IS NULL THEN u.account_role END AS creator_role
FROM webhooks w JOIN users u ON u.id = w.created_by
WHERE w.id = $1;

-- name: webhook_skipped_to
-- Webhook $1's filters leave nothing to deliver up to position $2: its cursor moves there.
UPDATE webhooks SET cursor = greatest(cursor, $2) WHERE id = $1;

-- name: webhook_delivered
-- Webhook $1 delivered the event at position $2 ($3 id, $4 type) with answer $5 in $6 ms, at attempt $7:
-- recorded, the cursor moved past it, the failures forgotten.
WITH attempt AS (
    INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, status, attempt, response_status,
                                    duration_ms)
    VALUES ($1, $2, $3, $4, 'succeeded', $7, $5, $6)
)
UPDATE webhooks SET cursor = greatest(cursor, $2), head_attempts = 0, head_failing_since = NULL,
                    consecutive_failures = 0, next_attempt_at = NULL
WHERE id = $1
RETURNING disabled_at, updated_at;

-- name: webhook_failed
-- Webhook $1 failed to deliver the event at position $2 ($3 id, $4 type): answer $5 (or none) and error $6,
-- after $7 ms, at attempt $8. With $9 (given up: it failed for long enough) the cursor moves past it and the
-- next event is tried at once, else it is tried again in $10 seconds. After $11 consecutive failures the
-- webhook is disabled, with the reason $12.
WITH attempt AS (
    INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, status, attempt, response_status,
                                    error, duration_ms)
    VALUES ($1, $2, $3, $4, CASE WHEN $9::boolean THEN 'given_up' ELSE 'failed' END, $8, $5, $6, $7)
)
UPDATE webhooks SET
    cursor = CASE WHEN $9::boolean THEN greatest(cursor, $2) ELSE cursor END,
    head_attempts = CASE WHEN $9::boolean THEN 0 ELSE head_attempts + 1 END,
    head_failing_since = CASE WHEN $9::boolean THEN NULL ELSE coalesce(head_failing_since, now()) END,
    consecutive_failures = consecutive_failures + 1,
    next_attempt_at = CASE WHEN $9::boolean THEN NULL ELSE now() + make_interval(secs => $10) END,
    disabled_at = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $11 THEN now() ELSE disabled_at END,
    disabled_reason = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $11 THEN $12
                           ELSE disabled_reason END
WHERE id = $1
RETURNING disabled_at, updated_at;

-- name: webhook_disable
-- Webhook $1 cannot deliver at all (its creator was deactivated): disabled with the reason $2.
UPDATE webhooks SET disabled_at = coalesce(disabled_at, now()), disabled_reason = coalesce(disabled_reason, $2)
WHERE id = $1;

-- name: claim_webhook_retries
-- At most $1 retries asked through the API, each with its webhook and what the webhook's creator may read,
-- locked until the caller's transaction ends (other delivery processes skip them).
SELECT d.id AS delivery_id, d.position, w.id, w.workspace_id, w.created_by, w.url, w.secret, w.event_types,
       w.subject_types, w.custom_field_ids, CASE WHEN u.deactivated_at IS NULL THEN u.account_role END AS creator_role
FROM webhook_deliveries d
JOIN webhooks w ON w.id = d.webhook_id
JOIN users u ON u.id = w.created_by
WHERE d.status = 'pending'
ORDER BY d.id
LIMIT $1
FOR UPDATE OF d SKIP LOCKED;

-- name: settle_webhook_retry
-- Retry $1 was sent: its outcome ($2 status, $3 answer, $4 error, $5 ms).
UPDATE webhook_deliveries SET status = $2, response_status = $3, error = $4, duration_ms = $5, attempted_at = now()
WHERE id = $1;

-- name: prune_webhook_deliveries
-- Attempts older than $1 seconds, at most $2 of them (pending retries stay).
DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
    SELECT id FROM webhook_deliveries
    WHERE attempted_at < now() - make_interval(secs => $1) AND status <> 'pending' LIMIT $2));

-- name: webhook_secrets_for_update
-- Every webhook's stored signing secret, locked until the transaction that reseals them commits.
SELECT id, secret FROM webhooks ORDER BY id FOR UPDATE;

-- name: set_webhook_secrets
-- The same secrets sealed anew (under another key): no change of the webhooks, so updated_at stays.
UPDATE webhooks w SET secret = v.secret FROM unnest($1::bigint[], $2::text[]) AS v (id, secret) WHERE w.id = v.id;
