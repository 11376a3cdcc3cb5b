-- name: create_workspace
INSERT INTO workspaces (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING RETURNING id;

-- name: workspace_id
SELECT id FROM workspaces WHERE slug = $1;

-- name: failed_operations
-- The outcomes of those of the operations $1 that failed (`cfv dlq`: why a dead-lettered message's did).
SELECT id, outcome::text AS outcome FROM operations WHERE id = ANY($1::uuid[]) AND status = 'failed';

-- name: reopen_failed_operations
-- A dead-lettered message is replayed (`cfv dlq replay`): its failed operations become pending again, so the
-- worker applies its commands rather than answering the failure recorded (keeping who owns each).
UPDATE operations SET status = 'pending', outcome = NULL, completed_at = NULL
WHERE id = ANY($1::uuid[]) AND status = 'failed';
